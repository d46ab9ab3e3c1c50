"""Counters and histograms for the hot path: plain dicts and lists, exported by a collector.

prometheus-client's own ``Counter`` and ``Histogram`` take a lock per update; a histogram
observation cost ~4.6 µs on the development machine, too much for one per workflow step at
thousands of steps a second. These keep their numbers in dicts of label tuples, updated from
one thread (a worker's event loop) with no lock, and hand them to prometheus-client as metric
families when the registry is scraped (from the HTTP thread: the copy is taken under the GIL,
so a scrape sees each series whole, at worst one observation behind). Label values must be
bounded by the caller (:class:`~._labels.LabelGuard`).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

#: Buckets (seconds) of latencies inside one process: a step, a transaction.
FAST_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets (seconds) of latencies across processes and Kafka: a fire lag, schedule-to-start.
QUEUE_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Buckets (seconds) of whole workflows and activities: from milliseconds to a day.
LONG_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
          21600.0, 86400.0)
#: Buckets of counts (commands per batch).
SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Counter:
    """A counter family: ``inc(key)`` where ``key`` is the tuple of label values."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...] = (), n: float = 1) -> None:
        values = self.values
        values[key] = values.get(key, 0) + n

    def get(self, key: tuple[str, ...] = ()) -> float:
        return self.values.get(key, 0)

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        items = list(self.values.items()) or ([((), 0)] if not self.labels else [])  # 0 before the first
        for key, v in items:
            fam.add_metric(list(key), v)
        return fam


class Histogram:
    """A histogram family: ``observe(key, value)``; per series, one count per bucket (not
    cumulative: one increment per observation) and the sum."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = FAST_S) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        s[bisect_left(self.bounds, value)] += 1
        s[-1] += value

    def count(self, key: tuple[str, ...] = ()) -> int:
        s = self.series.get(key)
        return int(sum(s[:-1])) if s is not None else 0

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        items = list(self.series.items()) or ([((), [0] * (len(self.bounds) + 2))] if not self.labels else [])
        for key, s in items:
            s = list(s)
            cum, buckets = 0.0, []
            for le, n in zip(self._les, s[:-1]):
                cum += n
                buckets.append((le, cum))
            fam.add_metric(list(key), buckets, sum_value=s[-1])
        return fam


def gauge(name: str, doc: str, values: Iterable[tuple[Sequence[str], float]], labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """A gauge family from ``(label values, value)`` pairs."""
    fam = GaugeMetricFamily(name, doc, labels=tuple(labels))
    for key, v in values:
        fam.add_metric(list(key), v)
    return fam


def counter(name: str, doc: str, values: Iterable[tuple[Sequence[str], float]], labels: Sequence[str] = ()) -> CounterMetricFamily:
    """A counter family from ``(label values, value)`` pairs (counts kept elsewhere)."""
    fam = CounterMetricFamily(name, doc, labels=tuple(labels))
    for key, v in values:
        fam.add_metric(list(key), v)
    return fam


class Instruments:
    """A collector over :class:`Counter` and :class:`Histogram` instances (register it once in
    a registry); ``extra`` yields more families at scrape time (gauges read from the worker)."""

    def __init__(self) -> None:
        self.metrics: list[Counter | Histogram] = []

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        m = Counter(name, doc, labels)
        self.metrics.append(m)
        return m

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = FAST_S) -> Histogram:
        m = Histogram(name, doc, labels, buckets)
        self.metrics.append(m)
        return m

    def extra(self) -> Iterable[Any]:
        return ()

    def collect(self) -> Iterator[Any]:
        for m in self.metrics:
            yield m.family()
        yield from self.extra()


__all__ = ["Counter", "Histogram", "Instruments", "gauge", "counter", "FAST_S", "QUEUE_S", "LONG_S", "SIZES"]
