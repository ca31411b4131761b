"""The learned second stage: candidates from several sources, features, a LightGBM LambdaRank ranker.

Label scheme (why the ranker never learns from scores that saw its labels). Given the training interactions
``data`` and the validation cases:

1. *Serving fold.* Every candidate source is fitted on ``data`` (early-stopped on ``validation`` where it can);
   these are the sources that score validation, test and served requests.
2. *Label fold.* Each user's last ``holdout`` training interactions are held out (``holdout_split``); a second,
   fresh copy of every source is fitted on the rest (``data_a``), with the epoch counts the serving fold chose, so
   no validation signal and no label is seen. The held-out interactions become ranking cases: history = what
   precedes them, label = the held-out item. ``FeatureTables`` (popularity, context lifts, ...) are fitted on
   ``data_a`` too. Every first-stage score and table value the ranker trains on was therefore computed without
   its label (``tests/ltr/test_ranker.py`` checks this by spying on every fit and score).
3. *Ranker.* ``LGBMRanker(objective="lambdarank")`` over the label fold's groups (one group per case; groups
   whose label no source proposed are dropped), early-stopped on NDCG@10 of the validation cases, whose features
   come from the serving fold, exactly as at test time.
4. *Rating.* ``LGBMClassifier`` on the same features of each label-fold (case, held-out item) pair, predicting
   rating >= 4 (only when the data has ratings).

Under ``recsys evaluate -m ltr`` (``recsys.models.ltr``) this is ``fit(train, validation)``; test is scored with
the serving fold, like SASRec and the retriever (no refit).
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from recsys.data import schema as S
from recsys.errors import ManifestMismatchError, RecsysError
from recsys.data.types import Cases, Sequences, TrainData, train_data_fingerprint
from recsys.ltr.cross import add_cross_feature, fit_cross_feature
from recsys.ltr.features import FeatureSettings, FeatureTables, build_features, categorical_columns, feature_columns
from recsys.ltr.sources import CandidateSource, SourceSpec, load_source, make_source, merge_candidates, source_scores
from recsys.reranker.model import CrossEncoder
from recsys.manifest import atomic_directory, fingerprint_file, fingerprint_json, read_manifest, write_manifest

KIND = "ltr"
CROSS_DIR = "cross_encoder"
RANKER_FILE, RATING_FILE, TABLES_FILE, SETTINGS_FILE = "ranker.txt", "rating.txt", "tables.pkl", "settings.json"

#: source kinds trained in epochs under a ``time_budget_s`` (what ``label_fold_time_budget_s`` caps)
TIMED_KINDS = ("sasrec", "retriever")
DEFAULT_SOURCES: list[dict[str, Any]] = [
    {"kind": "ease", "depth": 100, "params": {"l2": 100.0}},
    {"kind": "cooccurrence", "depth": 100, "params": {"neighbours": 50}},
    {"kind": "popularity", "depth": 50},
]


@dataclass
class LTRSettings:
    """A ranking run: its sources, features and LightGBM settings (TOML table ``[ltr]``)."""

    sources: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SOURCES])
    features: dict[str, Any] = field(default_factory=dict)
    holdout: int = 3
    scores_beyond_depth: bool = True
    objective: str = "lambdarank"  # or "rank_xendcg"
    n_estimators: int = 500
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 150
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 40
    rating: bool = True
    seed: int = 0
    threads: int = 2
    exclude_features: list[str] = field(default_factory=list)
    #: cap (seconds of training, each) on the label fold's refits of the epoch-trained sources (SASRec, the
    #: retriever), which otherwise train for the serving fold's epoch counts with no time limit; None = no cap
    label_fold_time_budget_s: float | None = None
    #: the text cross-encoder as a feature (``recsys.ltr.cross``): ``CrossEncoderArguments`` fields, or {"run": DIR};
    #: None = off (the default: on MovieLens 100K it does not help, docs/experiments/cross-encoder.md)
    cross_encoder: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "LTRSettings":
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        if set(d) - known:
            raise RecsysError(f"unknown ltr settings: {sorted(set(d) - known)} (known: {sorted(known)})")
        out = cls(**d)
        if out.label_fold_time_budget_s is not None and not out.label_fold_time_budget_s > 0:
            raise RecsysError(f"label_fold_time_budget_s must be positive seconds or None, got {out.label_fold_time_budget_s!r}")
        out.specs()  # validate early
        FeatureSettings.from_dict(out.features)
        return out

    def specs(self) -> list[SourceSpec]:
        specs = [SourceSpec.from_dict(s) for s in self.sources]
        names = [s.key for s in specs]
        if len(set(names)) != len(names):
            raise RecsysError(f"candidate source names must be unique, got {names} (set 'name' on repeated kinds)")
        return specs


def holdout_split(data: TrainData, holdout: int = 1) -> tuple[TrainData, Cases]:
    """``data`` without each user's last ``holdout`` interactions, and those interactions as ranking cases.

    A user keeps everything (and gets no case) unless it has more than ``holdout`` interactions. Each case's history
    is everything that precedes its item; its context is the held-out interaction's timestamp and context columns."""
    ev = data.events.with_row_index("__row")
    ev = ev.with_columns(__pos=pl.int_range(pl.len()).over("u"), __len=pl.len().over("u"))
    held = (pl.col("__len") > holdout) & (pl.col("__pos") >= pl.col("__len") - holdout)
    kept, labels = ev.filter(~held), ev.filter(held)
    seq = Sequences.from_sorted(kept["u"].to_numpy(), kept["i"].to_numpy(), data.n_users)
    drop = ["__row", "__pos", "__len"]
    data_a = TrainData(seq, data.n_items, data.items, kept.drop(drop), data.users, data.cold_items, data.synthetic_timestamps)
    starts, pos = data.sequences.indptr[labels["u"].to_numpy()], labels["__pos"].to_numpy()
    indptr = np.zeros(labels.height + 1, dtype=np.int64)
    np.cumsum(pos, out=indptr[1:])
    idx = np.repeat(starts - indptr[:-1], pos) + np.arange(indptr[-1])
    hist = Sequences(indptr, data.sequences.items[idx])
    ctx_cols = [c for c in labels.columns if c not in ("u", "i", S.RATING, S.WEIGHT, *drop)]
    ratings = labels[S.RATING].to_numpy().astype(np.float64) if S.RATING in labels.columns else None
    cases = Cases(labels["u"].to_numpy(), hist, labels["i"].to_numpy(), hist, labels.select(ctx_cols), ratings)
    return data_a, cases


def item_names(items: pl.DataFrame) -> pl.Series:
    """Display name of each catalogue item (its title, else its id), for explanations."""
    return (items["title"] if "title" in items.columns else items[S.ITEM_ID]).cast(pl.String).fill_null("?")


def catalogue_vectors(items: pl.DataFrame) -> np.ndarray:
    """MiniLM vectors of the catalogue's item text (the protocol's rendering), for the text-similarity features."""
    from recsys.retriever import default_base_model, embed_texts, load_text_model
    from recsys.text import render_items

    name = default_base_model()
    return embed_texts(render_items(items), load_text_model(name), cache_key=name)


SourceFactory = Callable[[SourceSpec, dict[str, Any]], CandidateSource]


class LearnedRanker:
    """Fit with ``fit(data, validation)``; ``score(cases)`` returns full-catalogue scores; ``save``/``load``."""

    def __init__(self, settings: LTRSettings | None = None, *, item_vectors: np.ndarray | None = None, source_factory: SourceFactory | None = None) -> None:
        self.settings = settings or LTRSettings()
        self.specs = self.settings.specs()
        self.feature_settings = FeatureSettings.from_dict(self.settings.features)
        self.item_vectors = item_vectors
        self.source_factory = source_factory or (lambda spec, overrides: make_source(spec, overrides))
        self.cross_: Any = None

    # ------------------------------------------------------------------ candidates and features
    @property
    def given_sources(self) -> list[str]:
        """Sources whose scores come with each served request (the two-tower retriever: the index's top ``depth``)."""
        return [s.key for s in self.specs if s.kind == "retriever"]

    def candidates(
        self, sources: dict[str, CandidateSource], cases: Cases, *, include_targets: bool = False, given: dict[str, np.ndarray] | None = None
    ) -> pl.DataFrame:
        """Merged candidates; ``given`` holds (cases x items) scores of sources computed by the caller (``-inf`` =
        not a candidate), e.g. the retriever's top ``depth`` from the index."""
        given = given or {}
        scores = {name: given[name] if name in given else source_scores(src, cases) for name, src in sources.items()}
        depths = {s.key: s.depth for s in self.specs}
        return merge_candidates(
            scores, depths, cases, scores_beyond_depth=self.settings.scores_beyond_depth, include_targets=include_targets,
            within_depth=self.given_sources,
        )  # fmt: skip

    def features(
        self, sources: dict[str, CandidateSource], tables: FeatureTables, cases: Cases, *, include_targets: bool = False,
        given: dict[str, np.ndarray] | None = None,
    ) -> pl.DataFrame:  # fmt: skip
        """Candidates of ``cases`` with their features (and ``label`` = is the case's target)."""
        frame = build_features(self.candidates(sources, cases, include_targets=include_targets, given=given), cases, tables)
        if self.cross_ is not None:
            frame = add_cross_feature(frame, cases, self.cross_)
        target = np.asarray(cases.targets, dtype=np.int32)[frame["case"].to_numpy()]
        return frame.hstack([pl.Series("label", (frame["item"].to_numpy() == target).astype(np.int32))])

    def feature_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The ranker's input matrix (float64, NaN = missing) of a feature frame; refuses one missing a column."""
        missing = [c for c in self.feature_names_ if c not in frame.columns]
        if missing:
            raise RecsysError(f"feature columns {missing} are missing: the request does not match the ranking run's features")
        if frame.height == 0:
            return np.zeros((0, len(self.feature_names_)))
        # column by column (nulls -> NaN): no polars query, whose overhead dominates a single request's frame
        return np.column_stack([frame[c].to_numpy().astype(np.float64) for c in self.feature_names_])

    # ------------------------------------------------------------------ training
    def fit(self, data: TrainData, validation: Cases | None = None, *, progress: Callable[[str], None] | None = None) -> "LearnedRanker":
        import lightgbm as lgb

        say = progress or (lambda _m: None)
        st = self.settings
        self.serving_ = {}
        for spec in self.specs:
            self.serving_[spec.key] = self.source_factory(spec, {}).fit(data, validation)
            say(f"serving source {spec.key} fitted")
        data_a, label_cases = holdout_split(data, st.holdout)
        if len(label_cases) == 0:
            raise RecsysError(f"no user has more than {st.holdout} training interactions: nothing to learn a ranking from")
        label_sources = {}
        for spec in self.specs:
            overrides = self.serving_[spec.key].params_without_validation()
            if st.label_fold_time_budget_s is not None and spec.kind in TIMED_KINDS:
                own = overrides.get("time_budget_s", spec.params.get("time_budget_s"))
                overrides = {**overrides, "time_budget_s": min(st.label_fold_time_budget_s, own if own is not None else np.inf)}
            label_sources[spec.key] = self.source_factory(spec, overrides).fit(data_a, None)
            say(f"label-fold source {spec.key} fitted" + (f" (epochs {overrides['epochs']})" if "epochs" in overrides else ""))
        if st.cross_encoder is not None:  # trained on data_a only: leak-free for the label fold and for serving
            first = label_sources[self.specs[0].key]
            self.cross_ = fit_cross_feature(st.cross_encoder, data_a, lambda c: source_scores(first, c), progress=say)
        if self.feature_settings.text_similarity and self.item_vectors is None:
            self.item_vectors = catalogue_vectors(data.items)
        tables_a = FeatureTables.fit(data_a, self.feature_settings, item_vectors=self.item_vectors)
        self.tables_ = FeatureTables.fit(data, self.feature_settings, item_vectors=self.item_vectors)
        self.tables_.extra["names"] = item_names(data.items)
        train = self.features(label_sources, tables_a, label_cases, include_targets=True)
        names = [c for c in feature_columns(train) if c not in st.exclude_features]
        self.feature_names_ = names
        self.categorical_ = categorical_columns(names)
        ranked = _with_positive(train.filter(pl.col("n_sources") > 0))
        if ranked.height == 0:
            raise RecsysError("no label was proposed by any candidate source: deepen the sources")
        params = dict(
            objective=st.objective, n_estimators=st.n_estimators, learning_rate=st.learning_rate, num_leaves=st.num_leaves,
            min_child_samples=st.min_child_samples, subsample=st.subsample, subsample_freq=1, colsample_bytree=st.colsample_bytree,
            reg_lambda=st.reg_lambda, random_state=st.seed, n_jobs=st.threads, verbose=-1, lambdarank_truncation_level=20,
        )  # fmt: skip
        ranker = lgb.LGBMRanker(**params)
        fit_kw: dict[str, Any] = {"categorical_feature": self.categorical_}
        self.validation_ndcg_: float | None = None
        if validation is not None and len(validation):
            val = _with_positive(self.features(self.serving_, self.tables_, validation).filter(pl.col("n_sources") > 0))
            if val.height:
                fit_kw.update(
                    eval_set=[(self.feature_matrix(val), val["label"].to_numpy())], eval_group=[_groups(val)], eval_at=[10],
                    callbacks=[lgb.early_stopping(st.early_stopping_rounds, verbose=False)],
                )  # fmt: skip
        with warnings.catch_warnings():  # eval_set is renamed in lightgbm 4.7; the old name works in every 4.x
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*eval_set.*")
            ranker.fit(self.feature_matrix(ranked), ranked["label"].to_numpy(), group=_groups(ranked), feature_name=names, **fit_kw)
        self.booster_ = ranker.booster_
        self.best_iteration_ = int(ranker.best_iteration_ or st.n_estimators) if "eval_set" in fit_kw else st.n_estimators
        if "eval_set" in fit_kw:
            self.validation_ndcg_ = float(ranker.best_score_["valid_0"]["ndcg@10"])
        say(f"ranker: {self.booster_.num_trees()} trees, best iteration {self.best_iteration_}, validation NDCG@10 (candidates only) {self.validation_ndcg_}")
        self.rating_booster_ = None
        if st.rating and label_cases.ratings is not None:
            pos = train.filter(pl.col("label") == 1)
            y = (label_cases.ratings[pos["case"].to_numpy()] >= 4).astype(np.int32)
            if 0 < y.sum() < len(y):
                clf = lgb.LGBMClassifier(
                    n_estimators=200, learning_rate=0.03, num_leaves=7, min_child_samples=30, subsample=0.8, subsample_freq=1,
                    colsample_bytree=0.8, random_state=st.seed, n_jobs=st.threads, verbose=-1,
                )  # fmt: skip
                clf.fit(self.feature_matrix(pos), y, feature_name=names, categorical_feature=self.categorical_)
                self.rating_booster_ = clf.booster_
        self.label_cases_, self.label_fold_ = label_cases, data_a  # for audits (leakage test); not saved
        self.data_fingerprint_ = train_data_fingerprint(data, [])
        self.n_items_ = data.n_items
        return self

    def params_without_validation(self) -> dict[str, Any]:
        """Settings for a refit without validation: the tree count and the sources' epochs validation chose."""
        sources = [
            {**spec.to_dict(), "params": {**spec.params, **self.serving_[spec.key].params_without_validation()}} for spec in self.specs
        ]
        return {"n_estimators": int(getattr(self, "best_iteration_", self.settings.n_estimators)), "sources": sources}

    # ------------------------------------------------------------------ scoring
    def rank_frame(self, cases: Cases, given: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
        """Candidates of ``cases`` with features and the ranker's ``score`` column (``given``: see ``candidates``)."""
        frame = self.features(self.serving_, self.tables_, cases, given=given)
        return frame.hstack([pl.Series("score", self._predict(frame), dtype=pl.Float32)])

    def _predict(self, frame: pl.DataFrame) -> np.ndarray:
        if frame.height == 0:
            return np.zeros(0, dtype=np.float32)
        return self.booster_.predict(self.feature_matrix(frame), num_iteration=self.best_iteration_).astype(np.float32)

    def score(self, cases: Cases) -> np.ndarray:
        """(len(cases), n_items) float32 ranking scores: the candidates first, in the ranker's order (ties broken by
        the first source's order), then every other item in the first source's order. The values are positions
        (exact in float32), not the ranker's margins (``rank_frame`` has those)."""
        frame = self.rank_frame(cases)
        n = self.n_items_
        first = source_scores(self.serving_[self.specs[0].key], cases)
        return positions(frame, first, n)

    def predict_rating(self, cases: Cases, items: np.ndarray | None = None) -> np.ndarray:
        """P(rating >= 4) of each case's ``items`` (default: its target)."""
        if self.rating_booster_ is None:
            raise RecsysError("this ranking run has no rating model (the training data had no ratings, or rating = false)")
        items = np.asarray(cases.targets if items is None else items, dtype=np.int32)
        probe = Cases(cases.users, cases.history, items, cases.exclude, cases.context, cases.ratings)
        frame = self.features(self.serving_, self.tables_, probe, include_targets=True).filter(pl.col("label") == 1).sort("case")
        return self.rating_booster_.predict(self.feature_matrix(frame)).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path | str, *, overwrite: bool = False) -> Path:
        directory = Path(directory)
        with atomic_directory(directory, KIND, overwrite=overwrite) as tmp:
            for name, src in self.serving_.items():
                src.save(tmp / "sources" / name)
            self.booster_.save_model(str(tmp / RANKER_FILE))
            if self.cross_ is not None:
                self.cross_.save(tmp / CROSS_DIR)
            if self.rating_booster_ is not None:
                self.rating_booster_.save_model(str(tmp / RATING_FILE))
            with open(tmp / TABLES_FILE, "wb") as f:
                pickle.dump(self.tables_, f, protocol=pickle.HIGHEST_PROTOCOL)
            state = {"settings": asdict(self.settings), "feature_names": self.feature_names_, "categorical": self.categorical_,
                     "best_iteration": self.best_iteration_, "n_items": self.n_items_, "validation_ndcg": self.validation_ndcg_}  # fmt: skip
            (tmp / SETTINGS_FILE).write_text(json.dumps(state, indent=2, default=str))
            files = {str(p.relative_to(tmp)): fingerprint_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            sources = {name: fingerprint_json({f: fp for f, fp in files.items() if f.startswith(f"sources/{name}/")}) for name in self.serving_}
            write_manifest(tmp, {"kind": KIND, "data_fingerprint": self.data_fingerprint_, "sources": sources, "files": files,
                                 "fingerprint": fingerprint_json(files), **getattr(self, "built_on_", {})})  # fmt: skip
        return directory

    @classmethod
    def load(cls, directory: Path | str, *, data_fingerprint: str | None = None, retriever_fingerprint: str | None = None) -> "LearnedRanker":
        """Open a saved run; refuse one whose files changed, that was built on other data than ``data_fingerprint`` or
        on another retriever run than ``retriever_fingerprint`` (``ManifestMismatchError`` naming both)."""
        import lightgbm as lgb

        directory = Path(directory)
        if not directory.is_dir():
            raise RecsysError(f"ranking run {directory} does not exist")
        manifest = read_manifest(directory, KIND)
        for f, fp in manifest.get("files", {}).items():
            if not (directory / f).is_file() or fingerprint_file(directory / f) != fp:
                raise ManifestMismatchError(f"{directory / f} is missing or does not match the fingerprint in {directory}/manifest.json")
        if data_fingerprint is not None and manifest.get("data_fingerprint") != data_fingerprint:
            raise ManifestMismatchError(
                f"ranking run {directory} was built on training data {manifest.get('data_fingerprint')}, not {data_fingerprint}: refit it on this data"
            )
        built = (manifest.get("retriever") or {}).get("fingerprint")
        if retriever_fingerprint is not None and built is not None and built != retriever_fingerprint:
            raise ManifestMismatchError(
                f"ranking run {directory} was built on retriever model {built}, but the index is model {retriever_fingerprint}: "
                f"rebuild it with `recsys train ranker DATASET --retriever RUN --out {directory}`"
            )
        state = json.loads((directory / SETTINGS_FILE).read_text())
        self = cls(LTRSettings.from_dict(state["settings"]))
        self.serving_ = {s.key: load_source(directory / "sources" / s.key) for s in self.specs}
        self.booster_ = lgb.Booster(model_file=str(directory / RANKER_FILE))
        if (directory / CROSS_DIR).is_dir():
            self.cross_ = CrossEncoder.load(directory / CROSS_DIR)
        self.rating_booster_ = lgb.Booster(model_file=str(directory / RATING_FILE)) if (directory / RATING_FILE).is_file() else None
        with open(directory / TABLES_FILE, "rb") as f:
            self.tables_ = pickle.load(f)  # noqa: S301 - fingerprint-checked above
        self.feature_names_, self.categorical_ = state["feature_names"], state["categorical"]
        self.best_iteration_, self.n_items_, self.validation_ndcg_ = state["best_iteration"], state["n_items"], state["validation_ndcg"]
        self.data_fingerprint_ = manifest.get("data_fingerprint")
        self.manifest = manifest
        return self


def positions(frame: pl.DataFrame, first: np.ndarray, n: int) -> np.ndarray:
    """(cases, n) float32 scores from ranked candidates: ``frame``'s candidates (``case``, ``item``, ``score``) first
    in score order (ties by ``first``), then every other item in ``first``'s order; values are positions."""
    order = np.argsort(np.argsort(-np.nan_to_num(first, neginf=-1e30), axis=1, kind="stable"), axis=1)
    out = (n - order).astype(np.float32)  # 1..n, first source's best highest
    case, item = frame["case"].to_numpy(), frame["item"].to_numpy()
    pos = np.lexsort((order[case, item], -frame["score"].to_numpy(), case))
    start = np.searchsorted(case[pos], case[pos], side="left")
    out[case[pos], item[pos]] = 2 * n - (np.arange(len(pos)) - start)
    return out


def _with_positive(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of the groups (cases) that contain their label, sorted by case (LightGBM groups are contiguous)."""
    return frame.filter(pl.col("label").max().over("case") > 0).sort("case", maintain_order=True)


def _groups(frame: pl.DataFrame) -> np.ndarray:
    return frame.group_by("case", maintain_order=True).len()["len"].to_numpy()


__all__ = ["DEFAULT_SOURCES", "LTRSettings", "LearnedRanker", "holdout_split", "positions"]
