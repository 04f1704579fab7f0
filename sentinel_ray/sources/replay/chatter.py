"""The chatter around the simulated market: social and news posts of one day, in each
platform's own id and URL formats; the posts of an episode (tip-channel promotion, news,
viral chatter); and the exchange filings of a day."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any, Callable

import numpy as np

from sentinel_ray.market import IST_OFFSET, MS_PER_DAY, MS_PER_MIN, SESSION_CLOSE_MS, SESSION_OPEN_MS, is_trading_day
from sentinel_ray.sources.replay.simulator import EPOCH, SymbolInfo, day_start_ms

PLATFORMS = ("reddit", "x", "telegram", "youtube", "news")
_REGULAR_PLATFORM_P = (0.30, 0.30, 0.15, 0.10, 0.15)

# IST daytime (08:00-24:00 IST) as ms after 00:00 UTC: 02:30-18:30 UTC.
_DAYTIME_MS = tuple(ms - int(IST_OFFSET.total_seconds()) * 1000 for ms in (8 * 60 * MS_PER_MIN, MS_PER_DAY))

_SOCIAL_ONE = (
    "{a} looking strong above the 20 DMA, adding more on dips",
    "Anyone tracking {a}? Volume picking up since the open",
    "Booked profit in {a} today, will re-enter near support",
    "{a} broke support today, staying away for now",
    "FII selling in {a} continues, DIIs absorbing everything",
    "Results of {a} were better than street estimates. Holding.",
    "{a} mein aaj accha move hai bhai, hold karo",
    "Kal {a} ka result hai, kya lagta hai sabko?",
    "{a} ne toh aaj rula diya 😭 SL hit ho gaya",
    "{a} long term ke liye best hai, dheere dheere accumulate karo",
    "Is {a} a value trap at these levels? Thoughts?",
)
_SOCIAL_TWO = (
    "{a} vs {b}: which one for the long term?",
    "Rotating from {a} into {b}, better risk-reward",
    "Bhai {a} aur {b} dono portfolio mein hai, sell karu kya?",
    "{a} and {b} both at 52-week highs, momentum is real",
)
_SOCIAL_NONE = (
    "Nifty looking weak today, market mein panic hai",
    "What's everyone's view on the RBI policy this week?",
    "Sensex up 500 points, green everywhere today",
    "Aaj market band kitne baje hoga? Koi batao",
    "Expiry day volatility is insane, trading light today",
    "Started my first SIP today, any tips for a beginner?",
)
_NEWS_ONE = (
    "{a} shares rise after quarterly earnings beat estimates",
    "{a} stock falls as brokerage cuts target price",
    "{a}: board approves fund raise via QIP",
    "{a} bags large order, shares in focus",
    "Promoters raise stake in {a}, stock trades higher",
)
_NEWS_TWO = ("{a} and {b} lead gains on the Nifty", "{a}, {b} drag benchmark indices lower")
_NEWS_NONE = (
    "Sensex, Nifty end flat amid mixed global cues",
    "FPIs turn net buyers in Indian equities this week",
    "Rupee settles higher against the US dollar",
)
_HANDLE_HEAD = ("dalal", "nifty", "bull", "bear", "trader", "stock", "market", "desi", "mumbai", "chart", "swing", "value")
_HANDLE_TAIL = ("_guru", "wala", "_king", "_pro", "_investor", "_baba", "_ji", "_india", "")
_SUBREDDITS = ("IndianStreetBets", "IndianStockMarket", "DalalStreetTalks")
_TELEGRAM = ("nifty_updates", "stock_market_hindi", "dalal_street_chat")
_TELEGRAM_PROMO = ("multibagger_calls", "operator_tips_vip", "rocket_stocks_india", "jackpot_penny_picks")
_YOUTUBE = ("StockMarketHindi", "NiftyWithRahul", "TradingChanakya", "InvestKaroIndia")
_NEWS_OUTLETS = (
    ("economictimes.indiatimes.com", "Economic Times"),
    ("www.moneycontrol.com", "Moneycontrol"),
    ("www.livemint.com", "Mint"),
    ("www.business-standard.com", "Business Standard"),
)
_X_EPOCH_MS = 1_288_834_974_657  # Twitter snowflake epoch


POST_KEYS = ("platform", "post_id", "author", "text", "ts", "url", "engagement", "tickers", "episode")
# Episode posts take serials from here up (regular ones stay below 50,000 a day), so an
# episode's post ids are known without generating the rest of the day.
EPISODE_SERIAL_BASE = 50_000


def day_posts(
    rng: np.random.Generator, day: dt.date, episode_posts: list[dict[str, list[Any]]], infos: list[SymbolInfo],
    posts_per_day: int, seed: int,
) -> dict[str, list[Any]]:
    """Good posts of the day, sorted by time, as Python lists (texts are built per post):
    the regular chatter plus the episodes' posts of this UTC day (`episode` True)."""
    trading = is_trading_day(day)
    n_regular = posts_per_day if trading else posts_per_day // 3
    day_ms = day_start_ms(day)
    # Chatter follows the market: most posts in session hours on trading days,
    # in IST daytime otherwise.
    lo, hi, busy = (SESSION_OPEN_MS, SESSION_CLOSE_MS, 0.65) if trading else (*_DAYTIME_MS, 0.8)
    in_busy = rng.random(n_regular) < busy
    ts = np.where(in_busy, rng.integers(lo, hi, n_regular), rng.integers(0, MS_PER_DAY, n_regular)) + day_ms
    platform = rng.choice(len(PLATFORMS), size=n_regular, p=_REGULAR_PLATFORM_P)
    order = np.argsort(ts, kind="stable")
    ts, platform = ts[order], platform[order]

    symbols = [info.symbol for info in infos]
    names = {info.symbol: short_name(info.name) for info in infos}
    out: dict[str, list[Any]] = {k: [] for k in POST_KEYS}
    for i in range(len(ts)):
        plat = PLATFORMS[int(platform[i])]
        tickers, text = _regular_text(rng, plat, symbols, names)
        post_id, author, url = identity(rng, plat, False, day, i, int(ts[i]), seed)
        engagement = None if plat == "news" else int(rng.lognormal(3.0, 1.2))
        for key, value in (("platform", plat), ("post_id", post_id), ("author", author), ("text", text),
                           ("ts", int(ts[i])), ("url", url), ("engagement", engagement),
                           ("tickers", tickers), ("episode", False)):
            out[key].append(value)
    episode_posts = [extra for extra in episode_posts if extra.get("ts")]
    for extra in episode_posts:
        for key in POST_KEYS:
            out[key].extend(list(v) if key == "tickers" else v for v in extra[key])
    if episode_posts:
        order = np.argsort(np.array(out["ts"], dtype=np.int64), kind="stable")
        out = {key: [values[j] for j in order] for key, values in out.items()}
    return out


# --- episode chatter -------------------------------------------------------------------

# Tip channels selling a pump: promotional words, emojis, Hinglish, a target price.
_PROMO = (
    "🚀🚀 {a} MULTIBAGGER ALERT 🚀🚀 Target {t} in 2 weeks. Buy before it flies!",
    "Operator news in {a} ✅ big move loading, accumulate now 🚀🔥",
    "{a} target {t} pakka 💯 operator entry ho chuki hai, abhi kharido warna pachtaoge 🚀",
    "Jackpot stock {a} 🚀🚀🚀 sirf VIP members ke liye. Buy before it flies",
    "Insider info: {a} big order coming 🚀 target {t}, don't miss this rocket",
    "{a} 🚀🚀 upper circuit coming today! Multibagger loading 💰💰",
    "Sure shot call: {a} 🎯 target {t}. Paisa double guaranteed 💰",
    "{a} mein upper circuit lagega, abhi kharido! Operator ka maal hai 🚀",
    "Buy before news: {a} jackpot 🚀 target {t} sure shot",
    "{a} = next multibagger 🔥 paisa double in 1 month, buy before it's too late",
)
# ... and after the run-up, selling it to latecomers.
_PROMO_LATE = (
    "{a} already up {p}% 🚀🚀 still time, target {t}! Upper circuit again tomorrow",
    "Missed {a}? Abhi bhi kharido, operator target {t} hai 🚀",
    "{a} ne toh paisa double kar diya 🚀🚀 hold for target {t}, multibagger",
    "{a} upper circuit 🔥 {p}% in no time, next jackpot loading 💰",
)
_EARNINGS_NEWS_UP = (
    "{n} Q{q} results: net profit rises {x}% YoY, beats estimates",
    "{n} shares jump after strong quarterly numbers",
    "{n} reports record quarterly revenue; margins expand",
)
_EARNINGS_NEWS_DOWN = (
    "{n} Q{q} results: net profit falls {x}% YoY, misses estimates",
    "{n} shares slide after weak quarterly numbers",
    "{n} cuts guidance after a soft quarter; shares under pressure",
)
_EARNINGS_SOCIAL_UP = (
    "{a} results solid, margins improved. Holding.",
    "{a} ka result accha aaya, management commentary bhi positive",
    "Q{q} numbers of {a} beat the street, volume confirms it",
)
_EARNINGS_SOCIAL_DOWN = (
    "{a} results disappointing, exiting my position",
    "{a} ka result kharab aaya, stop loss laga ke rakho",
    "Q{q} numbers of {a} missed badly, margins under pressure",
)
_FILING_NEWS = (
    "{n} bags order worth Rs {x} crore, shares in focus",
    "{n}: board approves share buyback at a premium",
    "{n} to acquire majority stake in a peer, stock gains",
    "{n} wins regulatory approval for new plant",
)
_FILING_SOCIAL = (
    "{a} order win filed on the exchange, good for the long term",
    "{a} announced a buyback today, solid signal from management",
    "{a} acquisition looks value accretive, adding on dips",
)
# Viral chatter about a large cap: noisy, but neither promotional nor news that moves it.
_VIRAL = (
    "Everyone on my feed is talking about {a} today 😂",
    "{a} new ad campaign is going viral, kya creativity hai",
    "That {a} CEO interview clip is everywhere today",
    "Why is {a} trending? Nothing changed in the numbers",
    "{a} memes are killing it today 🤣",
    "My whole office is discussing {a} today, kya scene hai?",
    "{a} customer care horror stories thread is blowing up",
    "{a} app outage today, Twitter is full of complaints",
)
_RALLY = (
    "Nifty up {x}% today, broad rally across sectors",
    "Sensex zooms {y} points as FIIs turn buyers",
    "Green everywhere! Market mein tezi hai aaj",
    "Bulls are back: Nifty, Sensex rally on global cues",
    "Small caps and mid caps join the rally, breadth very strong",
)

_PLATFORM_P = {
    "promo": (0.07, 0.25, 0.60, 0.08, 0.0),
    "news": (0.15, 0.20, 0.05, 0.05, 0.55),
    "viral": (0.30, 0.45, 0.05, 0.20, 0.0),
    "market": (0.20, 0.30, 0.10, 0.05, 0.35),
}


def episode_posts(
    rng: np.random.Generator, ts: np.ndarray, style: str, info: SymbolInfo | None, context: dict[str, Any],
    serial: Callable[[dt.date, int], int], seed: int,
) -> dict[str, list[Any]]:
    """An episode's posts at the times `ts` (ms, sorted), as lists like `day_posts`.

    `style`: promo / promo_late (a pump's), news_up / news_down (earnings), filing,
    viral, market (a rally: no ticker). `serial(day, k)` numbers the k-th post within its day.
    """
    group = {"promo": "promo", "promo_late": "promo", "viral": "viral", "market": "market"}.get(style, "news")
    platform = rng.choice(len(PLATFORMS), size=len(ts), p=_PLATFORM_P[group])
    names = {info.symbol: short_name(info.name)} if info is not None else {}
    out: dict[str, list[Any]] = {k: [] for k in POST_KEYS}
    for k in range(len(ts)):
        plat = PLATFORMS[int(platform[k])]
        t = int(ts[k])
        day = dt.date(1970, 1, 1) + dt.timedelta(milliseconds=t)
        fields = {"t": context.get("target"), "p": context.get("percent"), "q": context.get("quarter"),
                  "x": context.get("figure"), "y": context.get("points")}
        if group == "market":
            tickers: list[str] = []
            text = _RALLY[int(rng.integers(len(_RALLY)))].format(**fields)
        else:
            assert info is not None
            tickers = [info.symbol]
            news = plat == "news"
            templates = {
                "promo": _PROMO, "promo_late": _PROMO_LATE, "viral": _VIRAL,
                "news_up": _EARNINGS_NEWS_UP if news else _EARNINGS_SOCIAL_UP,
                "news_down": _EARNINGS_NEWS_DOWN if news else _EARNINGS_SOCIAL_DOWN,
                "filing": _FILING_NEWS if news else _FILING_SOCIAL,
            }[style]
            mention = names[info.symbol] if news else _mention(rng, info.symbol, names, promo=group == "promo")
            text = templates[int(rng.integers(len(templates)))].format(a=mention, n=names[info.symbol], **fields)
        post_id, author, url = identity(rng, plat, group == "promo", day, serial(day, k), t, seed)
        mu = {"promo": 4.5, "viral": 5.0}.get(group, 3.0)
        engagement = None if plat == "news" else int(rng.lognormal(mu, 1.2))
        for key, value in (("platform", plat), ("post_id", post_id), ("author", author), ("text", text),
                           ("ts", t), ("url", url), ("engagement", engagement),
                           ("tickers", tickers), ("episode", True)):
            out[key].append(value)
    return out


# --- filings ---------------------------------------------------------------------------

FILING_KEYS = ("exchange", "filing_id", "ticker", "company", "subject", "details", "ts", "attachment_url")
_ROUTINE_FILINGS = (
    ("Trading Window-XBRL", "Closure of trading window for designated persons"),
    ("Board Meeting Intimation", "Intimation of board meeting to consider quarterly results"),
    ("Shareholders meeting", "Notice of annual general meeting"),
    ("Certificate under SEBI (Depositories and Participants) Regulations, 2018", None),
    ("Copy of Newspaper Publication", "Newspaper publication of notice to shareholders"),
    ("Analysts/Institutional Investor Meet/Con. Call Updates", "Schedule of analyst meet"),
    ("Loss of Share Certificates", None),
)
FILING_SUBJECTS = {
    "earnings": ("Financial Results", "Outcome of Board Meeting: audited financial results for the quarter"),
    "order": ("Award of Order / Receipt of Order", "The company has received an order worth Rs {x} crore"),
    "buyback": ("Buyback", "Board approved buyback of equity shares"),
    "acquisition": ("Acquisition", "Execution of agreement to acquire a majority stake"),
    "approval": ("Updates", "Receipt of regulatory approval for the new facility"),
}
ROUTINE_SERIALS = 500  # routine filings of a day number below this; episodes' from here


def filing_record(day: dt.date, serial: int, info: SymbolInfo, subject: str, details: str | None,
                  ts_ms: int) -> dict[str, Any]:
    """One NSE announcement: seq_id-like ids unique per day, the archive's attachment URL."""
    filing_id = str(100_000_000 + (day - EPOCH).days * 1000 + serial)
    url = f"https://nsearchives.nseindia.com/corporate/{info.symbol}_{day:%d%m%Y}{filing_id}.pdf"
    return {"exchange": "NSE", "filing_id": filing_id, "ticker": info.symbol, "company": info.name,
            "subject": subject, "details": details, "ts": int(ts_ms), "attachment_url": url}


def routine_filings(rng: np.random.Generator, day: dt.date, infos: list[SymbolInfo]) -> list[dict[str, Any]]:
    """The day's announcements that move nothing: most filings are routine."""
    if not infos:
        return []
    n = int(rng.integers(2, 9)) if is_trading_day(day) else int(rng.integers(0, 3))
    who = rng.integers(len(infos), size=n)
    what = rng.integers(len(_ROUTINE_FILINGS), size=n)
    ts = np.sort(rng.integers(*_DAYTIME_MS, size=n)) + day_start_ms(day)
    return [filing_record(day, k, infos[int(who[k])], *_ROUTINE_FILINGS[int(what[k])], int(ts[k]))
            for k in range(n)]


def short_name(name: str) -> str:
    """How chatter names a company: 'Reliance Industries Ltd' -> 'Reliance Industries'."""
    for suffix in (" Ltd", " Limited"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removeprefix("The ")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _mention(rng: np.random.Generator, symbol: str, names: dict[str, str], promo: bool = False) -> str:
    style = rng.random()
    if promo:  # tip channels shout the symbol
        return f"${symbol}" if style < 0.5 else symbol
    if style < 0.4:
        return f"${symbol}"
    if style < 0.75:
        return symbol
    return names[symbol]


def _regular_text(
    rng: np.random.Generator, platform: str, symbols: list[str], names: dict[str, str]
) -> tuple[list[str], str]:
    n_tickers = int(rng.choice(3, p=(0.15, 0.65, 0.20))) if len(symbols) >= 2 else min(1, len(symbols))
    tickers = [symbols[int(j)] for j in rng.choice(len(symbols), size=n_tickers, replace=False)] if n_tickers else []
    news = platform == "news"
    templates = {
        0: _NEWS_NONE if news else _SOCIAL_NONE,
        1: _NEWS_ONE if news else _SOCIAL_ONE,
        2: _NEWS_TWO if news else _SOCIAL_TWO,
    }[n_tickers]
    template = templates[int(rng.integers(len(templates)))]
    # Headlines name the company; chatter mixes cashtags, symbols and names.
    mentions = [names[t] if news else _mention(rng, t, names) for t in tickers]
    return tickers, template.format(**dict(zip("ab", mentions)))


def identity(
    rng: np.random.Generator, platform: str, promo: bool, day: dt.date, i: int, ts_ms: int, seed: int
) -> tuple[str, str | None, str]:
    """(post_id, author, url) in each platform's own format, unique per (day, i)."""
    serial = (day - EPOCH).days * 100_000 + i
    handle = (
        _HANDLE_HEAD[int(rng.integers(len(_HANDLE_HEAD)))]
        + _HANDLE_TAIL[int(rng.integers(len(_HANDLE_TAIL)))]
        + str(int(rng.integers(1, 1000)))
    )
    if platform == "reddit":
        id36 = _base36(day.toordinal() * 100_000 + i)
        sub = _SUBREDDITS[int(rng.integers(len(_SUBREDDITS)))]
        return f"t3_{id36}", handle, f"https://www.reddit.com/r/{sub}/comments/{id36}/"
    if platform == "x":
        snowflake = ((ts_ms - _X_EPOCH_MS) << 22) | (i & 0x3FFFFF)
        return str(snowflake), handle, f"https://x.com/{handle}/status/{snowflake}"
    if platform == "telegram":
        channels = _TELEGRAM_PROMO if promo else _TELEGRAM
        channel = channels[int(rng.integers(len(channels)))]
        return f"{channel}/{serial}", channel, f"https://t.me/{channel}/{serial}"
    if platform == "youtube":
        digest = hashlib.blake2b(f"{seed}:{day.toordinal()}:{i}".encode(), digest_size=8).digest()
        video = base64.urlsafe_b64encode(digest).decode().rstrip("=")  # 11 chars, like real ids
        channel = _YOUTUBE[int(rng.integers(len(_YOUTUBE)))]
        return video, channel, f"https://www.youtube.com/watch?v={video}"
    host, outlet = _NEWS_OUTLETS[int(rng.integers(len(_NEWS_OUTLETS)))]
    article = str(100_000_000 + serial)
    author = outlet if rng.random() < 0.7 else None  # wire copy often carries no byline
    return article, author, f"https://{host}/markets/stocks/news/articleshow/{article}.cms"
