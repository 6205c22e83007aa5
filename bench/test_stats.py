"""Self-tests of bench/stats.py: the arithmetic, the targets and the report's tables, on
made-up figures (no benchmark is run, nothing is fetched).

    python3 -m unittest bench/test_stats.py
    python3 -m unittest discover -s bench -p 'test_*.py'

The docstring examples in bench/stats.py run too.
"""

import doctest
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stats  # noqa: E402  (bench/ is put on the path just above)


def load_tests(loader, tests, pattern):
    tests.addTests(doctest.DocTestSuite(stats))
    return tests


def rnd(config, n, *, requests=100000, duration_us=2_000_000, p50=500, p99=1000, ticks=150, auth=None, hz=100,
        sys=None):
    return stats.Round(config=config, round=n, requests=requests, duration_us=duration_us, p50=p50, p99=p99,
                       cpu_ticks=ticks, auth_ticks=auth, clk_tck=hz, errors=0, non2xx=0, sys_ticks=sys)


def make_run(**per_config):
    """A run with one round per configuration: per_config maps a name to Round keywords."""
    run = stats.Run()
    for c, kw in per_config.items():
        run.configs.append(c)
        run.labels[c] = f"label {c}"
        run.rounds.append(rnd(c, 1, **kw))
    run.meta["pool_size"] = "200"
    return run


class Median(unittest.TestCase):
    def test_odd_count_is_the_middle_value(self):
        self.assertEqual(stats.median([5, 1, 3]), 3)

    def test_even_count_is_the_mean_of_the_middle_two(self):
        self.assertEqual(stats.median([4, 1, 2, 3]), 2.5)

    def test_unmeasured_values_are_left_out(self):
        self.assertEqual(stats.median([None, 7, None]), 7)
        self.assertIsNone(stats.median([None]))
        self.assertIsNone(stats.median([]))

    def test_median_over_rounds_of_one_configuration(self):
        run = stats.Run(rounds=[rnd("jwt", 1, ticks=100), rnd("jwt", 2, ticks=300), rnd("jwt", 3, ticks=200),
                                rnd("nginx", 1, ticks=900)])
        # ticks / 100 Hz / 100,000 requests: 10, 30, 20 µs.
        self.assertEqual(run.median("jwt", "cpu"), 20.0)
        self.assertEqual(run.median("jwt", "rps"), 50000)
        self.assertIsNone(run.median("haproxy", "cpu"))


class Ratio(unittest.TestCase):
    def test_rounded_to_two_decimals(self):
        self.assertEqual(stats.ratio(19.16, 13.74), 1.39)
        self.assertEqual(stats.ratio(1, 3), 0.33)

    def test_missing_or_zero_denominator_is_not_measured(self):
        self.assertIsNone(stats.ratio(None, 1))
        self.assertIsNone(stats.ratio(1, None))
        self.assertIsNone(stats.ratio(1, 0))
        self.assertEqual(stats.fmt(stats.ratio(1, 0), 2), "-")

    def test_per_request_and_rate(self):
        self.assertEqual(stats.per_request_us(110, 100, 80000), 13.75)
        self.assertIsNone(stats.per_request_us(None, 100, 80000))
        self.assertIsNone(stats.per_request_us(5, 100, 0))
        self.assertEqual(stats.rate(500000, 8_000_000), 62500)
        self.assertIsNone(stats.rate(5, 0))


class Targets(unittest.TestCase):
    def test_check_and_verdict(self):
        self.assertEqual(stats.verdict(stats.check(1.0, "le", 1.0)), "**met**")
        self.assertEqual(stats.verdict(stats.check(1.01, "le", 1.0)), "**not met**")
        self.assertEqual(stats.verdict(stats.check(0.99, "ge", 1.0)), "**not met**")
        self.assertEqual(stats.verdict(stats.check(None, "ge", 1.0)), "not measured")
        with self.assertRaises(ValueError):
            stats.check(1, "lt", 2)

    def test_judged_on_the_printed_ratio(self):
        # 12.004 / 10 prints as 1.20: the row must not say 1.20× and "not met" for ≤ 1.2.
        self.assertTrue(stats.check(stats.ratio(12.004, 10), "le", 1.2))

    def floor_rows(self, run):
        return [line for line in stats.targets(run) if line.startswith("| (23)")]

    def test_floor_targets(self):
        # floor 10 µs/req; jwt 12 (1.20×, met), jwt_pool 13 (1.30×, not met), public 11 (1.10×, met).
        run = make_run(floor=dict(ticks=100), jwt=dict(ticks=120), jwt_pool=dict(ticks=130), public=dict(ticks=110))
        rows = self.floor_rows(run)
        self.assertEqual(len(rows), 3)
        self.assertIn("12.00 vs 10.00 µs (1.20×) | **met** |", rows[0])
        self.assertIn("pool of 200 tokens", rows[1])
        self.assertIn("13.00 vs 10.00 µs (1.30×) | **not met** |", rows[1])
        self.assertIn("11.00 vs 10.00 µs (1.10×) | **met** |", rows[2])

    def test_floor_targets_without_the_floor_are_not_measured(self):
        run = make_run(jwt=dict(ticks=120))
        run.skip["floor"] = "not in BENCH_ONLY"
        for row in self.floor_rows(run):
            self.assertTrue(row.endswith("| not measured |"), row)

    def test_nginx_targets(self):
        run = make_run(nginx=dict(ticks=140, p99=1660), jwt=dict(ticks=190, p99=2140))
        rows = stats.targets(run)
        cpu = next(r for r in rows if "JWT CPU per request ≤ nginx plain's" in r)
        self.assertIn("19.00 vs 14.00 µs (1.36×) | **not met** |", cpu)
        p99 = next(r for r in rows if "JWT p99 ≤ nginx plain p99" in r)
        self.assertIn("2.14 vs 1.66 ms (1.29×)", p99)
        rps = next(r for r in rows if "JWT ≥ 1.0× nginx plain throughput" in r)
        self.assertIn("| 1.00× | **met** |", rps)

    def test_best_peer_is_the_cheapest_measured_one(self):
        run = make_run(envoy=dict(ticks=300), haproxy=dict(ticks=200), lua=dict(ticks=200), lua_cache=dict(ticks=100))
        run.groups["peers"] = ["envoy", "haproxy", "lua", "lua_cache"]
        run.skip["lua_cache"] = "not installed"
        # Skipped peers are left out; on a tie the later one is named.
        self.assertEqual(stats.best_peer(run, ""), (20.0, "lua"))
        self.assertEqual(stats.best_peer(run, "_pool"), (None, None))

    def test_memory_targets_need_ten_thousand_connections(self):
        run = make_run()
        run.memory["idle_rss"] = 19456
        run.idle["tollgate"] = stats.Idle(seen=500, rss=40000, pss=30000, base_rss=19456, base_pss=15000, peak=60000)
        run.idle["nginx"] = stats.Idle(seen=500, rss=35000, pss=20000, base_rss=28000, base_pss=15000, peak=35000)
        rows = stats.targets(run)
        idle = next(r for r in rows if "Idle RSS ≤ 20 MiB" in r)
        self.assertIn("| 19.0 MiB | **met** |", idle)
        conns = next(r for r in rows if "10,000 idle connections ≤ 150 MiB" in r)
        self.assertIn("(500 connections) | not measured |", conns)
        twice = next(r for r in rows if "Tollgate's RSS ≤ 2× nginx's" in r)
        self.assertIn("39.1 vs 34.2 MiB (1.14×)", twice)
        self.assertTrue(twice.endswith("| not measured |"))


class Report(unittest.TestCase):
    def test_table_row(self):
        run = make_run(direct=dict(ticks=None, p50=150, p99=450), nginx=dict(ticks=140, p50=620, p99=1660),
                       floor=dict(ticks=120, p50=600, p99=1500))
        run.rounds[0].requests = 300000
        self.assertEqual(stats.table_row(run, "direct", "direct to upstream"),
                         "| direct to upstream | 150000 | 1.00 | 3.00 | 0.15 | 0.45 | 0.27 | - | - |")
        self.assertEqual(stats.table_row(run, "floor", "hyper floor"),
                         "| hyper floor | 50000 | 0.33 | 1.00 | 0.60 | 1.50 | 0.90 | 12.00 | 0.86 |")
        run.skip["floor"] = "not in BENCH_ONLY"
        self.assertEqual(stats.table_row(run, "floor", "hyper floor"),
                         "| hyper floor | skipped: not in BENCH_ONLY ||||||||")

    def test_floor_table(self):
        run = make_run(floor=dict(ticks=100), nginx=dict(ticks=140), jwt=dict(ticks=190))
        lines = stats.floor_table(run)
        self.assertEqual(lines[0], "#### Beside the hyper floor (the same rounds)")
        jwt = next(line for line in lines if line.startswith("| label jwt |"))
        self.assertEqual(jwt, "| label jwt | 50000 | 1.00 | 1.00 | 1.00 | 19.00 | - | - | 1.90 | +9.00 |")
        self.assertEqual(stats.floor_table(make_run(jwt=dict())), [])

    def test_user_and_system_split(self):
        run = make_run(floor=dict(ticks=100, sys=60), jwt=dict(ticks=190, sys=70))
        jwt = next(line for line in stats.floor_table(run) if line.startswith("| label jwt |"))
        self.assertEqual(jwt, "| label jwt | 50000 | 1.00 | 1.00 | 1.00 | 19.00 | 12.00 | 7.00 | 1.90 | +9.00 |")
        self.assertIn("jwt                round 1     50000 req/s  p99   1000 us  cpu  19.00 us/req "
                      "(user 12.00, system 7.00)", "\n".join(stats.per_round(run)))
        # A line with the split, and one from a run made before it was recorded.
        line = "jwt\t1\t100000\t2000000\t500\t1000\t190\t-\t100\t0\t0"
        self.assertEqual(stats.parse_round(line + "\t70").sys_cpu, 7.0)
        self.assertIsNone(stats.parse_round(line).user_cpu)
        with self.assertRaises(ValueError):
            stats.parse_round(line + "\t70\t1")

    def test_flood_rows_and_median(self):
        run = make_run()
        run.flood = [stats.FloodRound(1, 100000, 2_000_000, 2000, 80000, 2_000_000, 3000, 80, 0, 2_000_000),
                     stats.FloodRound(2, 100000, 2_000_000, 2000, 80000, 2_000_000, 5000, 80, 2, 2_000_000),
                     stats.FloodRound(3, 100000, 2_000_000, 2000, 80000, 2_000_000, 4000, None, None, None)]
        self.assertEqual(run.flood[0].row(),
                         "| 1 | 50000 | 2.00 | 40000 | 3.00 | 40/s (80 answered 200, 0 refused) | 1.50× |")
        self.assertEqual(run.flood[2].row(),
                         "| 3 | 50000 | 2.00 | 40000 | 4.00 | 0/s (0 answered 200, ? refused) | 2.00× |")
        self.assertEqual(stats.flood_ratio(run), 2.0)
        section = stats.flood_section(run)
        self.assertIn("Median of the rounds: the JWT route p99 rose 2.00× during the login flood.", section)

    def test_whole_report_from_files(self):
        with tempfile.TemporaryDirectory() as work:
            with open(os.path.join(work, "rounds.tsv"), "w") as fh:
                fh.write("\t".join(stats.ROUND_FIELDS) + "\n")
                for c, ticks in (("direct", "-"), ("nginx", "140"), ("floor", "100"), ("jwt", "190"), ("jwt_pool", "195")):
                    fh.write(f"{c}\t1\t100000\t2000000\t500\t1000\t{ticks}\t-\t100\t0\t0\n")
            with open(os.path.join(work, "facts.tsv"), "w") as fh:
                fh.write("meta\trounds\t1\nmeta\tduration\t2\nmeta\tpool_size\t200\n")
                for c in ("direct", "nginx", "floor", "jwt", "envoy", "jwt_pool"):
                    fh.write(f"config\t{c}\tlabel {c}\n")
                fh.write("skip\tenvoy\tnot in BENCH_ONLY\ngroup\tpeers\tenvoy\ngroup\textauthz\n")
                fh.write("memory\tidle_rss\t19456\nnote\t- a note\n")
            text = stats.report(stats.load(work))
        self.assertIn("| label floor (no auth; the same rounds as above) | 50000 |", text)
        self.assertIn("| label envoy | skipped: not in BENCH_ONLY ||||||||", text)
        self.assertIn("floor              round 1     50000 req/s  p99   1000 us  cpu  10.00 us/req", text)
        self.assertIn("direct             round 1     50000 req/s  p99   1000 us  cpu      - us/req", text)
        self.assertIn("not run (BENCH_ONLY without BENCH_EXTRAS=1)", text)
        self.assertIn("| (23) JWT route, one token", text)
        self.assertTrue(text.endswith("|\n"))

    def test_unknown_fact_is_an_error(self):
        with tempfile.TemporaryDirectory() as work:
            path = os.path.join(work, "facts.tsv")
            with open(path, "w") as fh:
                fh.write("bogus\tx\n")
            with self.assertRaises(ValueError):
                stats.read_facts(path, stats.Run())


class Splice(unittest.TestCase):
    def test_replaces_between_the_markers_only(self):
        text = f"# B\n\nintro\n{stats.BEGIN}\nold\nresults\n{stats.END}\n\nafter\n"
        self.assertEqual(stats.splice(text, "new\n"), f"# B\n\nintro\n{stats.BEGIN}\nnew\n{stats.END}\n\nafter\n")

    def test_missing_markers(self):
        with self.assertRaises(ValueError):
            stats.splice("no markers\n", "new\n")


if __name__ == "__main__":
    unittest.main()
