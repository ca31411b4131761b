"""The built-in demo dataset: a synthetic catalogue and interaction log with known generative rules.

Over 450 lines because the generator's rules (vocabularies, taste drift, context boosts) are one model of the data and are tested together.

Every signal a recommender here is meant to exploit is planted on purpose and documented in
``docs/demo-data.md``: category vocabulary in item text, Zipf popularity, drifting user taste, a
"same category again" sequential habit, and a device/time-of-day context effect. The constants below are
that generative truth, so tests of models can check they move in the right direction.

Everything is vectorised (numpy/polars over whole chunks of users; the only Python loops run over
categories or chunks), and the output is a pure function of ``(users, items, seed, interactions_per_user)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsys.context import HOUR_TO_TIME_OF_DAY, TIMES_OF_DAY
from recsys.data import schema as S
from recsys.data.dataset import Dataset
from recsys.errors import RecsysError

#: Bumped whenever a change to the rules below changes the generated data for a given seed.
DEMO_VERSION = 1

DEVICES = ["mobile", "desktop", "tv"]
#: UTC hour -> index into TIMES_OF_DAY (the parts of the day of ``recsys.context``)
_HOUR_TO_TOD_INDEX = np.array([TIMES_OF_DAY.index(t) for t in HOUR_TO_TIME_OF_DAY], dtype=np.int64)

# category -> (preferred device, preferred time of day, product nouns, topic words, brand suffix)
_CATEGORY_SPEC: dict[str, tuple[str, str, list[str], list[str], str]] = {
    "science fiction books": (
        "mobile", "night", ["novel", "anthology", "saga", "trilogy"],
        ["starship", "nebula", "android", "galaxy", "quantum", "colony", "cyborg", "warp", "asteroid", "orbit",
         "alien", "dystopia", "interstellar", "robot", "planet", "hyperspace", "mutant", "terraforming", "clone",
         "wormhole"],
        "Press",
    ),
    "italian cooking": (
        "tv", "evening", ["cookbook", "skillet", "apron", "cookware"],
        ["pasta", "risotto", "basil", "parmesan", "lasagna", "gnocchi", "pesto", "tiramisu", "focaccia",
         "mozzarella", "espresso", "ravioli", "prosciutto", "olive", "tomato", "truffle", "polenta", "ricotta",
         "carbonara", "oregano"],
        "Cucina",
    ),
    "trail running": (
        "mobile", "morning", ["shoe", "vest", "gaiter", "headlamp"],
        ["trail", "ultramarathon", "hydration", "ridge", "summit", "elevation", "mileage", "switchback",
         "endurance", "pace", "stride", "cadence", "singletrack", "blister", "traction", "lugs", "canyon",
         "altitude", "recovery", "downhill"],
        "Outdoor",
    ),
    "jazz records": (
        "desktop", "night", ["vinyl", "album", "record", "reissue"],
        ["saxophone", "bebop", "trumpet", "swing", "improvisation", "quartet", "bassline", "blues", "ballad",
         "groove", "trio", "fusion", "pressing", "sideman", "solo", "rhythm", "modal", "scat", "clarinet",
         "horn"],
        "Records",
    ),
    "indoor gardening": (
        "mobile", "afternoon", ["planter", "kit", "terrarium", "growlight"],
        ["succulent", "houseplant", "fern", "monstera", "pothos", "potting", "soil", "watering", "humidity",
         "orchid", "cactus", "propagation", "cutting", "fertilizer", "foliage", "seedling", "bonsai", "repotting",
         "moss", "microgreens"],
        "Greens",
    ),
    "retro gaming": (
        "tv", "night", ["cartridge", "console", "controller", "cabinet"],
        ["arcade", "pixel", "joystick", "platformer", "emulator", "sprite", "handheld", "chiptune", "speedrun",
         "highscore", "dungeon", "gamepad", "roguelike", "shooter", "cheatcode", "crt", "coinop", "sidescroller",
         "bossfight", "8bit"],
        "Retro",
    ),
    "travel guides": (
        "desktop", "morning", ["guidebook", "atlas", "phrasebook", "itinerary"],
        ["backpacking", "hostel", "passport", "lagoon", "island", "museum", "cathedral", "bazaar", "ferry",
         "railpass", "visa", "coastline", "fjord", "safari", "temple", "village", "archipelago", "landmark",
         "cruise", "sightseeing"],
        "Atlas",
    ),
    "photography gear": (
        "desktop", "afternoon", ["lens", "tripod", "camera", "gimbal"],
        ["aperture", "shutter", "mirrorless", "sensor", "bokeh", "telephoto", "flash", "exposure", "dslr", "zoom",
         "prime", "polarizer", "viewfinder", "megapixel", "autofocus", "macro", "wideangle", "iso", "histogram",
         "stabilizer"],
        "Optics",
    ),
    "woodworking tools": (
        "desktop", "evening", ["chisel", "plane", "lathe", "workbench"],
        ["dovetail", "sawhorse", "mallet", "router", "clamp", "sander", "walnut", "oak", "joinery", "mortise",
         "tenon", "dowel", "varnish", "veneer", "bandsaw", "spokeshave", "rasp", "marquetry", "plywood",
         "sawdust"],
        "Works",
    ),
    "board games": (
        "tv", "afternoon", ["boardgame", "expansion", "deck", "miniatures"],
        ["dice", "meeple", "deckbuilding", "strategy", "cooperative", "tabletop", "token", "placement", "campaign",
         "bluffing", "trivia", "chess", "puzzle", "tiles", "drafting", "victory", "scoring", "eurogame", "hexagon",
         "tournament"],
        "Games",
    ),
    "yoga and meditation": (
        "mobile", "evening", ["mat", "bolster", "course", "retreat"],
        ["asana", "mindfulness", "breathing", "vinyasa", "pose", "stretching", "chakra", "mantra", "calm",
         "balance", "flexibility", "pilates", "incense", "zen", "posture", "relaxation", "hatha", "lotus",
         "savasana", "kundalini"],
        "Studio",
    ),
    "knitting": (
        "tv", "morning", ["yarn", "pattern", "skein", "hook"],
        ["wool", "cardigan", "sweater", "scarf", "stitch", "purl", "cable", "alpaca", "merino", "crochet",
         "mittens", "beanie", "cashmere", "gauge", "blanket", "fairisle", "lace", "ribbing", "cowl", "socks"],
        "Yarns",
    ),
}

CATEGORIES: list[str] = list(_CATEGORY_SPEC)
#: category -> (preferred device, preferred time of day); every (device, time) pair is used exactly once.
CATEGORY_CONTEXT: dict[str, tuple[str, str]] = {c: (s[0], s[1]) for c, s in _CATEGORY_SPEC.items()}
#: category -> its own vocabulary (product nouns first, then topic words); no word belongs to two categories.
CATEGORY_VOCABULARY: dict[str, list[str]] = {c: s[2] + s[3] for c, s in _CATEGORY_SPEC.items()}
#: words every category's item text draws from.
GENERIC_WORDS = [
    "classic", "essential", "complete", "ultimate", "modern", "deluxe", "beginner", "advanced", "collected",
    "definitive", "compact", "handy", "starter", "pro", "vintage", "limited", "new", "bestselling", "original",
    "illustrated",
]
_GENERIC_SENTENCES = [
    "A favourite of critics and customers alike.",
    "Great value and built to last.",
    "Perfect as a gift or a treat for yourself.",
    "Highly rated by our community.",
    "A must-have for enthusiasts and newcomers.",
    "Carefully made with attention to detail.",
    "Ships quickly and comes with a satisfaction guarantee.",
    "One of this season's most talked-about picks.",
]
PRICE_TIERS = ["budget", "mid-range", "premium"]
_PRICE_TIER_P = [0.35, 0.45, 0.20]
COUNTRIES = ["US", "GB", "DE", "FR", "IT", "ES", "NL", "SE", "JP", "BR", "IN", "CA", "AU"]
_COUNTRY_P = np.array([0.25, 0.10, 0.09, 0.08, 0.06, 0.06, 0.04, 0.03, 0.07, 0.06, 0.07, 0.05, 0.04])
_BIO_OPENERS = ["Big fan of", "Really into", "Passionate about", "Always looking for", "Can't get enough of"]

# --- the generative parameters (docs/demo-data.md) ---
DEVICE_BOOST = 2.0  # category pick weight x2 when the device is the category's preferred one
TIME_BOOST = 1.5  # x1.5 when the time of day is the preferred one; both -> x3
REPEAT_CATEGORY_P = 0.3  # probability that an interaction copies the previous interaction's category
#: ``item_context=True`` only: every item has a ``format`` made for one device, and within the chosen category an
#: item whose format suits the request's device is FORMAT_BOOST times likelier (context at the item level)
FORMATS = {"mobile": "bite-size", "desktop": "in-depth", "tv": "big-screen"}
FORMAT_BOOST = 4.0
ZIPF_EXPONENT = 0.9  # popularity of the r-th most popular item of a category ~ r ** -ZIPF_EXPONENT
FOCUS_CATEGORIES = (1, 3)  # a taste concentrates on 1..3 categories (uniform)
FOCUS_ALPHA = 2.0  # Dirichlet concentration of focus categories
BACKGROUND_ALPHA = 0.05  # ... and of every other category
DEVICE_ALPHA = (1.2, 0.8, 0.5)  # Dirichlet prior of a user's device mix (mobile, desktop, tv)
#: relative activity per UTC hour (00..23): quiet nights, an evening peak.
HOURLY_ACTIVITY = np.array(
    [3, 2, 1, 1, 1, 2, 4, 6, 7, 7, 6, 6, 7, 7, 6, 6, 7, 8, 9, 10, 10, 9, 7, 5], dtype=np.float64
)
START = np.datetime64("2024-01-01T00:00:00", "us")  # first possible interaction (UTC)
PERIOD_DAYS = 365.0  # interactions fall in [START, START + PERIOD_DAYS)

_N_CAT = len(CATEGORIES)
_PRODUCT_NOUNS = 4
_TOPIC_WORDS = 20
# (user, position) cells generated at once: bounds a chunk's memory. The chunk layout feeds the random streams,
# so changing this changes the data: bump DEMO_VERSION with it.
_CELLS_PER_CHUNK = 1 << 20


def context_boost(category: str, device: str, time_of_day: str) -> float:
    """Multiplier applied to the weight of picking ``category`` in the given context (1.0 = no effect)."""
    if category not in CATEGORY_CONTEXT:
        raise KeyError(f"unknown demo category {category!r}")
    dev, tod = CATEGORY_CONTEXT[category]
    return (DEVICE_BOOST if device == dev else 1.0) * (TIME_BOOST if time_of_day == tod else 1.0)


def _boost_table() -> np.ndarray:
    """boost[device, time_of_day, category]."""
    out = np.ones((len(DEVICES), len(TIMES_OF_DAY), _N_CAT), dtype=np.float32)
    for c, cat in enumerate(CATEGORIES):
        for d, dev in enumerate(DEVICES):
            for t, tod in enumerate(TIMES_OF_DAY):
                out[d, t, c] = context_boost(cat, dev, tod)
    return out


def generate_demo(
    users: int = 2000, items: int = 1000, seed: int = 0, *, interactions_per_user: int = 30, item_context: bool = False
) -> tuple[Dataset, dict[str, Any]]:
    """Generate the demo dataset; return it (unsaved) and its source description for ``Dataset.save``.

    Each user gets between ceil(L/2) and L + L//2 draws (L = ``interactions_per_user``, mean about L);
    draws that repeat a (user, item) pair are dropped, so users end with somewhat fewer interactions.

    ``item_context``: items also get a ``format`` column (``FORMATS``: one per device) and the device favours the
    items of its format within a category (x ``FORMAT_BOOST``), so the context says which item, not only which
    category, comes next. Off by default (the default data are unchanged); the context ablations use it.
    """
    checks = (
        ("users", users, 1), ("items", items, _N_CAT), ("interactions_per_user", interactions_per_user, 1), ("seed", seed, 0)
    )
    for name, value, low in checks:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            extra = f" (one item per category at least: there are {_N_CAT} categories)" if name == "items" else ""
            raise RecsysError(f"demo data: {name} must be an integer >= {low}, got {value!r}{extra}")
    users, items, seed, length = int(users), int(items), int(seed), int(interactions_per_user)

    catalogue = _Catalogue(items, np.random.default_rng([seed, 0]), formats=item_context)
    lo, hi = length - length // 2, length + length // 2
    chunk = max(1, _CELLS_PER_CHUNK // hi)
    boost = _boost_table()
    inter_parts, user_parts = [], []
    for k, first in enumerate(range(0, users, chunk)):
        n = min(chunk, users - first)
        rng = np.random.default_rng([seed, 1, k])
        inter, prof = _user_chunk(rng, n, first, lo, hi, catalogue, boost)
        inter_parts.append(inter)
        user_parts.append(prof)
    interactions = pl.concat(inter_parts, rechunk=False)
    user_frame = pl.concat(user_parts, rechunk=False)
    source = {
        "name": "demo",
        "format": "demo",
        "version": DEMO_VERSION,
        "params": {"users": users, "items": items, "seed": seed, "interactions_per_user": length, **({"item_context": True} if item_context else {})},
    }
    return Dataset(interactions, catalogue.frame, user_frame), source


class _Catalogue:
    """Items: category, Zipf popularity within the category, text from the category vocabulary."""

    def __init__(self, n: int, rng: np.random.Generator, *, formats: bool = False) -> None:
        self.n = n
        # round-robin over a random permutation: categories are balanced, ids carry no category signal,
        # and the order of an item within its category's share of the permutation is its popularity rank
        perm = rng.permutation(n)
        category = np.empty(n, dtype=np.int64)
        category[perm] = np.arange(n) % _N_CAT
        rank = np.empty(n, dtype=np.int64)
        rank[perm] = np.arange(n) // _N_CAT
        self.category = category
        # sampling table: items sorted by (category, rank); a category's items form one block
        self.order = np.lexsort((rank, category))
        self.sizes = np.bincount(category, minlength=_N_CAT).astype(np.float64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.quality = rng.normal(0.0, 0.4, n)  # per-item rating offset
        self.frame = self._frame(rng)
        self.format: np.ndarray | None = None
        if formats:  # drawn after everything else, so the rest of the catalogue is the same with or without
            self.format = rng.integers(0, len(DEVICES), n)
            self.frame = self.frame.with_columns(format=pl.Series(list(FORMATS.values())).gather(self.format))
            self._device_cdf = self._format_cdfs()

    def _format_cdfs(self) -> np.ndarray:
        """cdf[device, position in the sampling table]: within each category block, the cumulative Zipf x format
        weights, normalised to end at 1 (one inverse-CDF table per device)."""
        assert self.format is not None
        out = np.zeros((len(DEVICES), self.n))
        for c in range(_N_CAT):
            lo, size = int(self.offsets[c]), int(self.sizes[c])
            zipf = np.arange(1.0, size + 1.0) ** -ZIPF_EXPONENT
            fmt = self.format[self.order[lo : lo + size]]
            for d in range(len(DEVICES)):
                cum = np.cumsum(zipf * np.where(fmt == d, FORMAT_BOOST, 1.0))
                out[d, lo : lo + size] = cum / cum[-1]
        return out

    def sample_for_device(self, category: np.ndarray, device: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Like ``sample``, with the items of the device's format ``FORMAT_BOOST`` times likelier."""
        out = np.empty(category.shape, dtype=np.int64)
        for d in range(len(DEVICES)):
            for c in range(_N_CAT):
                m = (category == c) & (device == d)
                if m.any():
                    lo, size = int(self.offsets[c]), int(self.sizes[c])
                    pos = np.searchsorted(self._device_cdf[d, lo : lo + size], u[m], side="right")
                    out[m] = self.order[lo + np.minimum(pos, size - 1)]
        return out

    def sample(self, category: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Item index for each (category, uniform in [0, 1)) pair, Zipf within the category.

        Inverse CDF of the discretised power law: P(rank r) ~ (r+1)^(1-s) - r^(1-s) ~ r^-s (ranks from 1).
        """
        a = 1.0 - ZIPF_EXPONENT
        size = self.sizes[category]
        x = (1.0 + u * ((size + 1.0) ** a - 1.0)) ** (1.0 / a)
        r = np.minimum(x.astype(np.int64) - 1, size.astype(np.int64) - 1)
        return self.order[self.offsets[category] + r]

    def _frame(self, rng: np.random.Generator) -> pl.DataFrame:
        n, cat = self.n, self.category
        vocab_size = _PRODUCT_NOUNS + _TOPIC_WORDS
        vocab = pl.Series([w for c in CATEGORIES for w in CATEGORY_VOCABULARY[c]])
        # five distinct topic words per item: start + j * step (mod 20) with steps that never wrap onto start
        steps = np.array([s for s in range(1, _TOPIC_WORDS) if all((j * s) % _TOPIC_WORDS for j in range(1, 5))])
        start = rng.integers(0, _TOPIC_WORDS, n)
        step = steps[rng.integers(0, len(steps), n)]
        base = cat * vocab_size + _PRODUCT_NOUNS
        topic_idx = [base + (start + j * step) % _TOPIC_WORDS for j in range(5)]
        topic = [vocab.gather(i) for i in topic_idx]
        noun_idx = cat * vocab_size + rng.integers(0, _PRODUCT_NOUNS, n)
        noun = vocab.gather(noun_idx)
        titled = pl.Series([w.capitalize() for w in vocab])
        generic = pl.Series([w.capitalize() for w in GENERIC_WORDS])
        with_article = pl.Series([("An " if w[0] in "aeiou" else "A ") + w for w in GENERIC_WORDS])
        g1 = generic.gather(rng.integers(0, len(GENERIC_WORDS), n))
        g2 = with_article.gather(rng.integers(0, len(GENERIC_WORDS), n))
        sentence = pl.Series(_GENERIC_SENTENCES).gather(rng.integers(0, len(_GENERIC_SENTENCES), n))
        brand_names = pl.Series(
            [f"{w.capitalize()} {_CATEGORY_SPEC[c][4]}" for c in CATEGORIES for w in _CATEGORY_SPEC[c][3][:5]]
        )
        brand_rank = np.minimum(rng.geometric(0.45, n) - 1, 4)  # a few brands dominate each category
        brand = brand_names.gather(cat * 5 + brand_rank)
        price = pl.Series(PRICE_TIERS).gather(rng.choice(len(PRICE_TIERS), n, p=_PRICE_TIER_P))
        cats = pl.Series(CATEGORIES).gather(cat)
        f = pl.DataFrame(
            {
                "g1": g1, "g2": g2, "n": noun, "N": titled.gather(noun_idx), "T0": titled.gather(topic_idx[0]),
                "T1": titled.gather(topic_idx[1]), "t0": topic[0], "t1": topic[1], "t2": topic[2], "t3": topic[3],
                "t4": topic[4], "c": cats, "s": sentence,
            }
        )
        text = f.select(
            # "Modern Asana Zen Bolster"
            title=pl.concat_str([pl.col("g1"), pl.col("T0"), pl.col("T1"), pl.col("N")], separator=" "),
            # "A collected bolster about zen, chakra and kundalini, with a touch of incense. Filed under yoga and
            # meditation. <generic sentence>"
            description=pl.concat_str(
                [
                    pl.col("g2"), pl.lit(" "), pl.col("n"), pl.lit(" about "), pl.col("t1"), pl.lit(", "),
                    pl.col("t2"), pl.lit(" and "), pl.col("t3"), pl.lit(", with a touch of "), pl.col("t4"),
                    pl.lit(". Filed under "), pl.col("c"), pl.lit(". "), pl.col("s"),
                ]
            ),
            tags=pl.concat_list([pl.col("t0"), pl.col("t2"), pl.col("t4")]),
        )
        return pl.DataFrame(
            {
                S.ITEM_ID: np.arange(1, n + 1, dtype=np.int64),
                "title": text["title"],
                "category": cats,
                "description": text["description"],
                "tags": text["tags"],
                "price_tier": price,
                "brand": brand,
            }
        )


def _dirichlet_tastes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n tastes over categories, each concentrated on 1..3 random focus categories."""
    k = rng.integers(FOCUS_CATEGORIES[0], FOCUS_CATEGORIES[1] + 1, n)
    keys = rng.random((n, _N_CAT))
    focus = keys <= np.take_along_axis(np.sort(keys, axis=1), (k - 1)[:, None], axis=1)
    g = rng.standard_gamma(np.where(focus, FOCUS_ALPHA, BACKGROUND_ALPHA))
    g[g.sum(axis=1) == 0, 0] = 1.0  # vanishingly unlikely; keeps the row a distribution
    return g / g.sum(axis=1, keepdims=True)


def _timestamps(rng: np.random.Generator, n: int, width: int, valid: np.ndarray) -> np.ndarray:
    """Per-user increasing timestamps (int64 microseconds since the epoch), diurnal hour profile."""
    start = rng.uniform(0.0, 0.75 * PERIOD_DAYS, n)
    span = rng.uniform(0.05, 1.0, n) * (PERIOD_DAYS - start)
    x = np.sort(np.where(valid, rng.random((n, width)), 2.0), axis=1)
    days = start[:, None] + np.minimum(x, 1.0) * span[:, None]
    # warp the time within each day by the inverse CDF of the hourly profile: monotone, so order is kept
    day = np.floor(days)
    cdf = np.concatenate([[0.0], np.cumsum(HOURLY_ACTIVITY) / HOURLY_ACTIVITY.sum()])
    frac = np.interp(days - day, cdf, np.linspace(0.0, 1.0, 25))
    us = np.minimum(((day + frac) * 86_400e6).astype(np.int64), int(PERIOD_DAYS * 86_400e6) - 1)
    # strictly increasing within the row (ties at microsecond resolution are bumped by 1 us)
    ar = np.arange(width, dtype=np.int64)
    us = np.maximum.accumulate(us - ar, axis=1) + ar
    return us + START.astype(np.int64)


def _user_chunk(
    rng: np.random.Generator, n: int, first: int, lo: int, hi: int, cat: _Catalogue, boost: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame]:
    width = hi
    lengths = rng.integers(lo, hi + 1, n)
    pos = np.arange(width)
    valid = pos[None, :] < lengths[:, None]
    start_taste = _dirichlet_tastes(rng, n).astype(np.float32)
    end_taste = _dirichlet_tastes(rng, n).astype(np.float32)
    device_mix = rng.dirichlet(DEVICE_ALPHA, n)

    ts = _timestamps(rng, n, width, valid)
    hour = (ts // 3_600_000_000) % 24
    tod = _HOUR_TO_TOD_INDEX[hour]
    device = (rng.random((n, width))[:, :, None] > np.cumsum(device_mix, axis=1)[:, None, :-1]).sum(axis=2)

    # taste drifts linearly from start to end over the user's sequence: taste_c = start_c + w * (end_c - start_c);
    # a fresh category is drawn with weight taste_c * boost_c(device, time of day) (loops run over categories)
    w = np.minimum(pos[None, :] / np.maximum(lengths - 1, 1)[:, None], 1.0).astype(np.float32)
    ctx = device * len(TIMES_OF_DAY) + tod
    boost_flat = boost.reshape(-1, _N_CAT)

    def weight(c: int) -> np.ndarray:
        taste_c = start_taste[:, c, None] + w * (end_taste[:, c] - start_taste[:, c])[:, None]
        return taste_c * boost_flat[ctx, c]

    total = np.zeros((n, width), dtype=np.float32)
    for c in range(_N_CAT):
        total += weight(c)
    u = rng.random((n, width), dtype=np.float32) * total
    fresh = np.zeros((n, width), dtype=np.int64)
    acc = np.zeros((n, width), dtype=np.float32)
    for c in range(_N_CAT - 1):
        acc += weight(c)
        fresh += acc <= u
    del total, u, acc
    # sequential habit: with REPEAT_CATEGORY_P copy the previous category (= the last fresh draw)
    repeat = rng.random((n, width)) < REPEAT_CATEGORY_P
    repeat[:, 0] = False
    last_fresh = np.maximum.accumulate(np.where(repeat, 0, pos[None, :]), axis=1)
    category = np.take_along_axis(fresh, last_fresh, axis=1)
    u_item = rng.random((n, width))
    item = cat.sample(category, u_item) if cat.format is None else cat.sample_for_device(category, device, u_item)

    # rating from affinity: the taste share of the category (relative to the favourite) + item quality
    chosen = np.zeros((n, width), dtype=np.float32)
    best = np.zeros((n, width), dtype=np.float32)
    for c in range(_N_CAT):
        taste_c = start_taste[:, c, None] + w * (end_taste[:, c] - start_taste[:, c])[:, None]
        np.maximum(best, taste_c, out=best)
        chosen = np.where(category == c, taste_c, chosen)
    share = chosen / best
    noise = rng.normal(0.0, 0.6, (n, width))
    rating = np.clip(np.rint(1.0 + 3.2 * share + cat.quality[item] + noise), 1.0, 5.0)

    flat = valid.ravel()
    local_user = np.repeat(np.arange(n, dtype=np.int64), lengths)
    inter = pl.DataFrame(
        {
            S.USER_ID: local_user + (first + 1),
            S.ITEM_ID: item.ravel()[flat].astype(np.int64) + 1,
            S.TIMESTAMP: pl.Series(ts.ravel()[flat]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            S.RATING: rating.ravel()[flat],
            "device": pl.Series(DEVICES).gather(device.ravel()[flat]),
        }
    )
    pair = pl.Series(local_user * cat.n + item.ravel()[flat])
    inter = inter.filter(pair.is_first_distinct())

    profiles = _profiles(rng, n, first, (start_taste + end_taste) / 2)
    return inter, profiles


def _profiles(rng: np.random.Generator, n: int, first: int, taste: np.ndarray) -> pl.DataFrame:
    """Age, country and a bio naming the user's one or two favourite categories (overall taste)."""
    top = np.argsort(-taste, axis=1)[:, :2]
    second = np.take_along_axis(taste, top[:, 1:2], axis=1)[:, 0] >= 0.25
    names = pl.Series(CATEGORIES)
    vocab = pl.Series([w for c in CATEGORIES for w in _CATEGORY_SPEC[c][3]])
    w1 = vocab.gather(top[:, 0] * _TOPIC_WORDS + rng.integers(0, _TOPIC_WORDS, n))
    w2 = vocab.gather(np.where(second, top[:, 1], top[:, 0]) * _TOPIC_WORDS + rng.integers(0, _TOPIC_WORDS, n))
    f = pl.DataFrame(
        {
            "o": pl.Series(_BIO_OPENERS).gather(rng.integers(0, len(_BIO_OPENERS), n)),
            "c1": names.gather(top[:, 0]),
            "c2": names.gather(top[:, 1]),
            "two": second,
            "w1": w1,
            "w2": w2,
        }
    )
    bio = f.select(
        bio=pl.concat_str(
            [
                pl.col("o"), pl.lit(" "), pl.col("c1"),
                pl.when(pl.col("two")).then(pl.lit(" and ") + pl.col("c2")).otherwise(pl.lit("")),
                pl.lit(". Lately: "), pl.col("w1"), pl.lit(", "), pl.col("w2"), pl.lit("."),
            ]
        )
    )["bio"]
    age = np.clip(np.rint(rng.normal(36.0, 12.0, n)), 16, 80).astype(np.int64)
    country = pl.Series(COUNTRIES).gather(rng.choice(len(COUNTRIES), n, p=_COUNTRY_P / _COUNTRY_P.sum()))
    return pl.DataFrame(
        {S.USER_ID: np.arange(first + 1, first + n + 1, dtype=np.int64), "age": age, "country": country, "bio": bio}
    )
