"""What the benchmark prints: one table of runs, then the targets of issue 4 and of the reference."""

from dataclasses import dataclass

from bench.children import Usage
from bench.scaling import Comparison, MemoryCheck

# Issue 4's targets.
ZERO_LATENCY_MSG_S = 2_900
WITH_LATENCY_MSG_S = 2_000
BASELINE_RATIO = 2.0
SCALING_RATIO = 2.0
MEMORY_MB = 100.0
# The "one send path" issue's targets: our msg/s over the reference's, on the
# same engine and endpoint. At 0 ms only aiohttp and requests have one.
ZERO_LATENCY_REFERENCE_RATIO = {"aiohttp": 0.8, "requests": 0.95}
WITH_LATENCY_REFERENCE_RATIO = 0.9
AIOHTTP_ZERO_LATENCY_MSG_S = 11_000

HEADER = [
    "run",
    "endpoint",
    "rows",
    "seconds",
    "msg/s",
    "vs reference",
    "p50 ms",
    "p99 ms",
    "peak RSS MB",
    "CPU ms/msg",
    "CPU vs ref",
    "endpoint CPU ms/msg",
    "endpoint RSS MB",
    "db+redis CPU ms/msg",
    "machine busy",
    "others (cores)",
]


@dataclass(frozen=True)
class RunResult:
    name: str
    endpoint: str
    rows: int  # rows sent during the run
    seconds: float
    send_ms: list[float]  # one per send attempt; empty when not recorded
    processes: list[Usage]
    endpoint_usage: Usage
    server_cpu: float | None  # CPU seconds of the MariaDB and Redis servers during the run
    machine_busy: float  # share of all cores busy during the run
    other_cores: float  # cores used meanwhile by processes that are not part of the run

    @property
    def msg_s(self) -> float:
        return self.rows / self.seconds

    def per_message_ms(self, cpu_seconds: float) -> float:
        return cpu_seconds / max(self.rows, 1) * 1000

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds of the run's own processes per message."""
        return self.per_message_ms(sum(u.cpu_seconds for u in self.processes))


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def verdict(met: bool) -> str:
    return "target met" if met else "MISSED"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def row(result: RunResult, reference: RunResult | None) -> list[str]:
    return [
        result.name,
        result.endpoint,
        f"{result.rows:,}",
        f"{result.seconds:.1f}",
        f"{result.msg_s:,.0f}",
        "n/a" if reference is None else f"{result.msg_s / reference.msg_s:.2f}x",
        ms(percentile(result.send_ms, 0.50)),
        ms(percentile(result.send_ms, 0.99)),
        "/".join(f"{u.peak_rss_mb:.0f}" for u in result.processes),
        f"{result.cpu_ms:.3f}",
        "n/a" if reference is None else f"{result.cpu_ms / reference.cpu_ms:.2f}x",
        f"{result.per_message_ms(result.endpoint_usage.cpu_seconds):.3f}",
        f"{result.endpoint_usage.peak_rss_mb:.0f}",
        "n/a" if result.server_cpu is None else f"{result.per_message_ms(result.server_cpu):.3f}",
        f"{result.machine_busy:.0%}",
        f"{result.other_cores:.2f}",
    ]


def table(results: list[RunResult], reference: RunResult | None) -> str:
    cells = [HEADER] + [row(r, reference) for r in results]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
        for line in cells
    ]
    return "\n".join(lines)


def breakdown(results: list[RunResult]) -> list[str]:
    """Peak RSS and CPU seconds of each process, the endpoint's last."""
    lines = ["per process (peak RSS, CPU seconds):"]
    for r in results:
        parts = [f"{u.name} {u.peak_rss_mb:.0f} MB {u.cpu_seconds:.1f} s" for u in r.processes]
        parts.append(
            f"endpoint ({r.endpoint}) {r.endpoint_usage.peak_rss_mb:.0f} MB {r.endpoint_usage.cpu_seconds:.1f} s"
        )
        server = "n/a" if r.server_cpu is None else f"{r.server_cpu:.1f} s"
        lines.append(f"  {r.name}: {'; '.join(parts)}; MariaDB + Redis {server}")
    return lines


def contention(results: list[RunResult], cores: int, threshold: float = 0.25) -> list[str]:
    """A warning per run during which other processes took a noticeable share of the machine."""
    return [
        f"warning: other processes used {r.other_cores:.2f} of {cores} cores during the {r.name} run; "
        f"its figures understate this machine"
        for r in results
        if r.other_cores > threshold
    ]


def reference_targets(project: RunResult, reference: RunResult | None, latency_ms: float, engine: str) -> list[str]:
    """Our msg/s over the reference's, and at 0 ms on aiohttp our msg/s itself."""
    if reference is None:
        return ["ratio vs reference: n/a (--skip-reference)"]
    ratio = project.msg_s / reference.msg_s
    cpu = (
        f"CPU per message: ours {project.cpu_ms:.3f} ms, reference {reference.cpu_ms:.3f} ms "
        f"({project.cpu_ms / reference.cpu_ms:.2f}x)"
    )
    goal = WITH_LATENCY_REFERENCE_RATIO if latency_ms else ZERO_LATENCY_REFERENCE_RATIO.get(engine)
    target = (
        f"no target for {engine} at 0 ms"
        if goal is None
        else f"target >= {goal:g}x ({engine}, {latency_ms:g} ms): {verdict(ratio >= goal)}"
    )
    # Three decimals: 0.899 must not read as a missed 0.90.
    lines = [f"ratio vs reference: {ratio:.3f}x ({project.msg_s:,.0f} vs {reference.msg_s:,.0f} msg/s); {target}", cpu]
    if latency_ms == 0 and engine == "aiohttp":
        lines.append(
            f"aiohttp at 0 ms: {project.msg_s:,.0f} msg/s; target >= {AIOHTTP_ZERO_LATENCY_MSG_S:,}: "
            f"{verdict(project.msg_s >= AIOHTTP_ZERO_LATENCY_MSG_S)}"
        )
    return lines


def targets(project: RunResult, baseline: RunResult | None, latency_ms: float) -> list[str]:
    """Issue 4's: our msg/s, and our ratio to the seed-style baseline when it ran."""
    if latency_ms == 0:
        goal, condition = ZERO_LATENCY_MSG_S, "0 ms endpoint, 100,000 rows"
    else:
        goal, condition = WITH_LATENCY_MSG_S, "200 ms endpoint, 20,000 rows, --concurrency raised"
    lines = [
        f"throughput: {project.msg_s:,.0f} msg/s; target >= {goal:,} ({condition}): {verdict(project.msg_s >= goal)}"
    ]
    if baseline is None:
        lines.append("ratio vs baseline: n/a (add --baseline)")
    else:
        ratio = project.msg_s / baseline.msg_s
        target = (
            f"target >= {BASELINE_RATIO:g}x: {verdict(ratio >= BASELINE_RATIO)}"
            if latency_ms == 0
            else "no target with latency"
        )
        lines.append(f"ratio vs baseline: {ratio:.2f}x; {target}")
    return lines


def scaling(
    producer: Comparison | None, consumer: Comparison | None, processed: int, unrelated: int, pending: int
) -> list[str]:
    if producer is None or consumer is None:
        return ["producer poll ratio: skipped (--skip-scaling)", "consumer poll ratio: skipped (--skip-scaling)"]
    return [
        f"producer poll ratio: {producer.ratio:.2f}x ({pending:,} pending: {producer.small * 1000:.1f} ms; "
        f"+ {processed:,} processed: {producer.large * 1000:.1f} ms); target <= {SCALING_RATIO:g}x: "
        f"{verdict(producer.ratio <= SCALING_RATIO)}",
        f"consumer poll ratio: {consumer.ratio:.2f}x (0 unrelated keys: {consumer.small * 1000:.1f} ms; "
        f"{unrelated:,}: {consumer.large * 1000:.1f} ms); target <= {SCALING_RATIO:g}x: "
        f"{verdict(consumer.ratio <= SCALING_RATIO)}",
    ]


def memory(check: MemoryCheck | None) -> str:
    if check is None:
        return "consumer RSS with jobs queued: skipped (add --memory-check)"
    return (
        f"consumer RSS with {check.jobs:,} jobs queued: {check.peak_rss_mb:.0f} MB peak "
        f"({check.sent:,} sent in {check.seconds:.0f} s); target < {MEMORY_MB:g} MB: "
        f"{verdict(check.peak_rss_mb < MEMORY_MB)}"
    )
