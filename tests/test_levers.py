"""The levers report: per-round ratios to each variant's reference, median and quartiles."""

from wnrl.experiments.levers import PAIRS, report


def test_report_takes_per_round_ratios() -> None:
    refs = set(PAIRS.values())
    times = {name: [0.010, 0.020, 0.040] for name in set(PAIRS) | refs}
    times["update channels_last"] = [0.005, 0.020, 0.080]  # ratios 0.5, 1, 2 to "update"
    times["update"] = [0.010, 0.020, 0.040]
    times["update 1 thread"] = [0.020, 0.040, 0.080]  # "update" is 0.5x it every round
    lines = dict(line.split(": ", 1) for line in report(times))
    assert lines["update channels_last / update"].startswith("1.000 (0.500-2.000); 20.00 vs")
    assert lines["update / update 1 thread"].startswith("0.500 (0.500-0.500); 20.00 vs 40.00")
    assert len(lines) == len(PAIRS)
