"""The chatter around the simulated market: social and news posts of one day, in each
platform's own id and URL formats, plus the tip-channel promotion before an episode."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import numpy as np

from sentinel_ray.market import IST_OFFSET, MS_PER_DAY, MS_PER_MIN, SESSION_CLOSE_MS, SESSION_OPEN_MS, is_trading_day
from sentinel_ray.sources.replay.simulator import EPOCH, Episode, SymbolInfo, day_start_ms

PLATFORMS = ("reddit", "x", "telegram", "youtube", "news")
_REGULAR_PLATFORM_P = (0.30, 0.30, 0.15, 0.10, 0.15)
_PROMO_PLATFORM_P = (0.07, 0.25, 0.60, 0.08, 0.0)

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
_PROMO = (
    "🚀🚀 {a} MULTIBAGGER ALERT 🚀🚀 Target 3x in 2 weeks. Buy before it flies!",
    "Operator news in {a} ✅ big move loading, accumulate now 🚀🔥",
    "{a} target 3x pakka 💯 operator entry ho chuki hai, abhi lo warna pachtaoge 🚀",
    "Jackpot stock {a} 🚀🚀🚀 sirf VIP members ke liye. Buy before it flies",
    "Insider info: {a} big order coming 🚀 target 3x, don't miss this rocket",
    "{a} 🚀🚀 upper circuit coming today! Multibagger loading 💰💰",
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


def day_posts(
    rng: np.random.Generator, day: dt.date, episode: Episode | None, infos: list[SymbolInfo],
    posts_per_day: int, seed: int,
) -> dict[str, list[Any]]:
    """Good posts of the day, sorted by time, as Python lists (texts are built per post)."""
    trading = is_trading_day(day)
    n_regular = posts_per_day if trading else posts_per_day // 3
    day_ms = day_start_ms(day)
    # Chatter follows the market: most posts in session hours on trading days,
    # in IST daytime otherwise.
    lo, hi, busy = (SESSION_OPEN_MS, SESSION_CLOSE_MS, 0.65) if trading else (*_DAYTIME_MS, 0.8)
    in_busy = rng.random(n_regular) < busy
    ts = np.where(in_busy, rng.integers(lo, hi, n_regular), rng.integers(0, MS_PER_DAY, n_regular)) + day_ms
    platform = rng.choice(len(PLATFORMS), size=n_regular, p=_REGULAR_PLATFORM_P)
    promo = np.zeros(n_regular, dtype=bool)
    if episode is not None:
        m = episode.promo_posts
        pump_ms = episode.bar_ms(episode.pump_bar)
        ts = np.concatenate([ts, rng.integers(episode.promo_start_ms, pump_ms, m)])
        platform = np.concatenate([platform, rng.choice(len(PLATFORMS), size=m, p=_PROMO_PLATFORM_P)])
        promo = np.concatenate([promo, np.ones(m, dtype=bool)])
    order = np.argsort(ts, kind="stable")
    ts, platform, promo = ts[order], platform[order], promo[order]

    symbols = [info.symbol for info in infos]
    names = {info.symbol: _short_name(info.name) for info in infos}
    out: dict[str, list[Any]] = {k: [] for k in ("platform", "post_id", "author", "text", "ts", "url", "engagement", "tickers", "promo")}
    for i in range(len(ts)):
        plat = PLATFORMS[int(platform[i])]
        if promo[i]:
            assert episode is not None
            tickers = [episode.ticker]
            text = _PROMO[int(rng.integers(len(_PROMO)))].format(a=_mention(rng, episode.ticker, names, promo=True))
        else:
            tickers, text = _regular_text(rng, plat, symbols, names)
        post_id, author, url = _identity(rng, plat, bool(promo[i]), day, i, int(ts[i]), seed)
        engagement = None if plat == "news" else int(rng.lognormal(3.0 if not promo[i] else 4.5, 1.2))
        for key, value in (("platform", plat), ("post_id", post_id), ("author", author), ("text", text),
                           ("ts", int(ts[i])), ("url", url), ("engagement", engagement),
                           ("tickers", tickers), ("promo", bool(promo[i]))):
            out[key].append(value)
    return out


def _short_name(name: str) -> str:
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


def _identity(
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
