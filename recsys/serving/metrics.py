"""Prometheus metrics of the serving app, in the text exposition format (no client library needed).

* ``recsys_http_requests_total{method, endpoint, status}``: requests by method (the standard HTTP methods, any
  other name counts as ``method="other"``), route template (``/recommend/{user_id}``,
  never the raw path, so the label set stays bounded; unmatched paths count as ``endpoint="<unmatched>"``);
* ``recsys_http_request_duration_seconds{endpoint}``: latency histogram;
* ``recsys_http_requests_in_flight``;
* ``recsys_reloads_total{result}``: hot swaps (``ok``, ``client_error``, ``server_error``);
* ``recsys_model_info{model_fingerprint, index_fingerprint, dataset_fingerprint, index_type}`` = 1 for the
  service now answering (an info gauge), and ``recsys_index_items``.

Every update takes one lock: the app's handlers run on a thread pool.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping, Sequence

#: Latency buckets in seconds (upper bounds; ``+Inf`` is implied).
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "<unmatched>"
#: The method label's values besides "other": a client can send any token as the method, so labels come from this set.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """The metric label of an HTTP method: one of :data:`HTTP_METHODS`, else ``"other"``."""
    return method if method in HTTP_METHODS else OTHER_METHOD


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, object]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Metrics:
    """Counters, a histogram and gauges for one app instance."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self.buckets = tuple(sorted(buckets))
        self._requests: dict[tuple[str, str, str], int] = {}
        self._hist: dict[str, list[int]] = {}  # endpoint -> per-bucket counts (+Inf last)
        self._hist_sum: dict[str, float] = {}
        self._in_flight = 0
        self._reloads: dict[str, int] = {}
        self._info: dict[str, str] = {}
        self._index_items = 0

    # ------------------------------------------------------------------ updates
    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self._in_flight -= 1
            key = (method_label(method), endpoint, str(int(status)))
            self._requests[key] = self._requests.get(key, 0) + 1
            counts = self._hist.setdefault(endpoint, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._hist_sum[endpoint] = self._hist_sum.get(endpoint, 0.0) + seconds

    def reload(self, result: str) -> None:
        with self._lock:
            self._reloads[result] = self._reloads.get(result, 0) + 1

    def set_service(self, info: Mapping[str, object], index_items: int) -> None:
        with self._lock:
            self._info = {k: str(v) for k, v in info.items()}
            self._index_items = int(index_items)

    # ------------------------------------------------------------------ reading
    def request_count(self, endpoint: str | None = None, status: int | None = None, method: str | None = None) -> int:
        """Total of the request counter over the label values given (tests and benchmarks)."""
        with self._lock:
            return sum(
                n
                for (m, e, s), n in self._requests.items()
                if (endpoint is None or e == endpoint) and (status is None or s == str(status)) and (method is None or m == method)
            )

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP recsys_http_requests_total HTTP requests by method, route template and status code.",
                "# TYPE recsys_http_requests_total counter",
            ]
            for (m, e, s), n in sorted(self._requests.items()):
                lines.append(f"recsys_http_requests_total{_labels([('method', m), ('endpoint', e), ('status', s)])} {n}")
            lines += [
                "# HELP recsys_http_request_duration_seconds HTTP request latency by route template.",
                "# TYPE recsys_http_request_duration_seconds histogram",
            ]
            for e in sorted(self._hist):
                counts = self._hist[e]
                cumulative = 0
                for bound, c in zip([*self.buckets, float("inf")], counts):
                    cumulative += c
                    lines.append(f"recsys_http_request_duration_seconds_bucket{_labels([('endpoint', e), ('le', _number(bound))])} {cumulative}")
                lines.append(f"recsys_http_request_duration_seconds_sum{_labels([('endpoint', e)])} {self._hist_sum[e]!r}")
                lines.append(f"recsys_http_request_duration_seconds_count{_labels([('endpoint', e)])} {cumulative}")
            lines += [
                "# HELP recsys_http_requests_in_flight HTTP requests being served.",
                "# TYPE recsys_http_requests_in_flight gauge",
                f"recsys_http_requests_in_flight {self._in_flight}",
                "# HELP recsys_reloads_total Hot swaps of model and index by result.",
                "# TYPE recsys_reloads_total counter",
            ]
            for r in ("ok", "client_error", "server_error"):
                lines.append(f"recsys_reloads_total{_labels([('result', r)])} {self._reloads.get(r, 0)}")
            lines += [
                "# HELP recsys_model_info The retriever model, FAISS index and dataset now serving (value 1).",
                "# TYPE recsys_model_info gauge",
            ]
            if self._info:
                lines.append(f"recsys_model_info{_labels(sorted(self._info.items()))} 1")
            lines += [
                "# HELP recsys_index_items Items in the FAISS index now serving.",
                "# TYPE recsys_index_items gauge",
                f"recsys_index_items {self._index_items}",
            ]
        return "\n".join(lines) + "\n"


def parse_exposition(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a text exposition (comments dropped): enough for tests and benchmarks."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out
