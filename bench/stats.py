#!/usr/bin/env python3
"""The statistics of bench/run: medians of the rounds, ratios, the results tables and the
targets, computed from the raw figures bench/run collects in its work directory.

bench/run starts and stops the processes and records what it measured, as it was read:

- rounds.tsv, one line per measured run of wrk after a header line: configuration,
  round, requests, duration_us, p50_us, p99_us, cpu_ticks (user + system clock ticks of
  the configuration's processes over the run; "-" when it has none, as `direct`),
  auth_ticks (the same for Tollgate alone where it sits behind another proxy; else "-"),
  clk_tck, errors (socket errors), non2xx, sys_ticks (the system share of cpu_ticks;
  absent from runs made before it was recorded);
- facts.tsv, everything else, one fact a line, tab-separated, its kind first (see
  `read_facts`).

Commands:

    stats.py report WORK            the results section (Markdown) on stdout
    stats.py splice FILE PART       FILE's text between the bench:results markers
                                    replaced by PART's
    stats.py round REQUESTS DURATION_US TICKS AUTH_TICKS CLK_TCK
                                    "req/s cpu auth_cpu" of one run, for bench/run's log
    stats.py ratio A B              A / B to two decimals ("-" when not measured)
    stats.py rate N DURATION_US     N per second, no decimals
    stats.py mib KIB                KiB as MiB, one decimal

Every figure is rounded as it is printed (req/s to the unit, CPU µs to two decimals,
ratios to two decimals), and the targets are judged on the printed ratios, so a row never
says 1.00× beside "not met". A value that was not measured is None, printed "-", and a
target that depends on one is "not measured". Standard library only; the self-tests are
bench/test_stats.py (`python3 -m unittest discover -s bench -p 'test_*.py'`).
"""

import os
import sys
from dataclasses import dataclass, field

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"


# ---------------------------------------------------------------------------------------
# The arithmetic.


def median(values):
    """The median of the values that were measured (None ones are left out); the mean of
    the middle two for an even count; None when nothing was measured.

    >>> median([3, 1, 2]), median([4, 1, 3, 2]), median([None, 5]), median([])
    (2, 2.5, 5, None)
    """
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return None
    mid = len(vs) // 2
    return vs[mid] if len(vs) % 2 else (vs[mid - 1] + vs[mid]) / 2


def ratio(a, b):
    """a / b rounded to two decimals, as it is printed and judged; None when either is not
    measured or b is 0.

    >>> ratio(19.16, 13.74), ratio(1, 0), ratio(None, 2)
    (1.39, None, None)
    """
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def per_request_us(ticks, clk_tck, requests):
    """CPU time per request in µs (two decimals) from clock ticks over a run; None when the
    configuration has no process of its own to count or served nothing.

    >>> per_request_us(110, 100, 80000)
    13.75
    """
    if ticks is None or not requests or not clk_tck:
        return None
    return round(ticks / clk_tck / requests * 1e6, 2)


def rate(n, duration_us):
    """Events per second, to the unit; None for an empty interval.

    >>> rate(500000, 8000000)
    62500
    """
    if n is None or not duration_us:
        return None
    return round(n / (duration_us / 1e6))


def check(value, op, limit):
    """Whether a measured value meets a target: True, False, or None when not measured.
    op is "le" (at most) or "ge" (at least).

    >>> check(1.0, "le", 1.0), check(1.01, "le", 1.0), check(2.0, "ge", 2.0), check(None, "ge", 1)
    (True, False, True, None)
    """
    if value is None:
        return None
    if op == "le":
        return value <= limit
    if op == "ge":
        return value >= limit
    raise ValueError(f"unknown comparison {op!r}")


def verdict(ok):
    """The last column of the targets table.

    >>> verdict(True), verdict(False), verdict(None)
    ('**met**', '**not met**', 'not measured')
    """
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def fmt(value, decimals):
    """A figure as printed: "-" when not measured.

    >>> fmt(63417.0, 0), fmt(1.5, 2), fmt(None, 2)
    ('63417', '1.50', '-')
    """
    if value is None:
        return "-"
    return f"{value:.{decimals}f}"


def ms(us):
    """µs as ms, two decimals.

    >>> ms(1655), ms(None)
    ('1.66', '-')
    """
    return fmt(None if us is None else us / 1000, 2)


def mib_value(kib):
    """KiB as MiB rounded to one decimal (the value judged), or None."""
    return None if kib is None else round(kib / 1024, 1)


def mib(kib):
    """KiB as MiB, one decimal, as printed.

    >>> mib(19456), mib(None)
    ('19.0', '-')
    """
    return fmt(mib_value(kib), 1)


def diff(a, b):
    """a − b with its sign, two decimals.

    >>> diff(20.53, 19.16), diff(16.75, 19.16), diff(None, 1)
    ('+1.37', '-2.41', '-')
    """
    if a is None or b is None:
        return "-"
    return f"{a - b:+.2f}"


def num(text, cast=float):
    """A raw field: "-" or "" is None."""
    if text is None or text in ("-", ""):
        return None
    return cast(text)


# ---------------------------------------------------------------------------------------
# The raw figures.


@dataclass
class Round:
    """One measured run of wrk against one configuration, with its derived figures rounded
    as bench/run has always printed them."""

    config: str
    round: int
    requests: int
    duration_us: int
    p50: int
    p99: int
    cpu_ticks: int | None
    auth_ticks: int | None
    clk_tck: int
    errors: int
    non2xx: int
    sys_ticks: int | None = None

    @property
    def rps(self):
        return rate(self.requests, self.duration_us)

    @property
    def cpu(self):
        return per_request_us(self.cpu_ticks, self.clk_tck, self.requests)

    @property
    def auth_cpu(self):
        return per_request_us(self.auth_ticks, self.clk_tck, self.requests)

    @property
    def sys_cpu(self):
        """The system (kernel) share of `cpu`, µs per request."""
        return per_request_us(self.sys_ticks, self.clk_tck, self.requests)

    @property
    def user_cpu(self):
        """The user-space share of `cpu`, µs per request."""
        if self.cpu_ticks is None or self.sys_ticks is None:
            return None
        return per_request_us(self.cpu_ticks - self.sys_ticks, self.clk_tck, self.requests)


ROUND_FIELDS = ["config", "round", "requests", "duration_us", "p50_us", "p99_us", "cpu_ticks",
                "auth_ticks", "clk_tck", "errors", "non2xx", "sys_ticks"]


def parse_round(line):
    """One line of rounds.tsv; one without the last field (sys_ticks) is an older run's."""
    f = line.rstrip("\n").split("\t")
    if len(f) not in (len(ROUND_FIELDS), len(ROUND_FIELDS) - 1):
        raise ValueError(f"rounds.tsv: {len(f)} fields, not {len(ROUND_FIELDS)}: {line!r}")
    return Round(config=f[0], round=int(f[1]), requests=int(f[2]), duration_us=int(f[3]),
                 p50=int(f[4]), p99=int(f[5]), cpu_ticks=num(f[6], int), auth_ticks=num(f[7], int),
                 clk_tck=int(f[8]), errors=int(f[9]), non2xx=int(f[10]),
                 sys_ticks=num(f[11], int) if len(f) > 11 else None)


def read_rounds(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    if lines and lines[0].split("\t")[0] == "config":
        lines = lines[1:]
    return [parse_round(line) for line in lines]


@dataclass
class FloodRound:
    """One round of the login flood: the JWT route alone, then during password grants."""

    round: int
    base_requests: int
    base_duration_us: int
    base_p99: int
    flood_requests: int
    flood_duration_us: int
    flood_p99: int
    grants_requests: int | None
    grants_non2xx: int | None
    grants_duration_us: int | None

    @property
    def p99_ratio(self):
        return ratio(self.flood_p99, self.base_p99)

    def row(self):
        grants = self.grants_requests or 0
        grants_rate = rate(grants, self.grants_duration_us or 1)
        ok = grants - (self.grants_non2xx or 0)
        refused = "?" if self.grants_non2xx is None else self.grants_non2xx
        return (f"| {self.round} | {fmt(rate(self.base_requests, self.base_duration_us), 0)} | "
                f"{ms(self.base_p99)} | {fmt(rate(self.flood_requests, self.flood_duration_us), 0)} | "
                f"{ms(self.flood_p99)} | {grants_rate}/s ({ok} answered 200, {refused} refused) | "
                f"{fmt(self.p99_ratio, 2)}× |")


@dataclass
class Idle:
    """Idle keep-alive connections to a fresh instance: how many, and its memory (KiB)."""

    seen: int
    rss: int
    pss: int
    base_rss: int
    base_pss: int
    peak: int


@dataclass
class Run:
    """A whole run: its rounds and the facts bench/run recorded about it."""

    rounds: list = field(default_factory=list)
    configs: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)
    auth: set = field(default_factory=set)
    groups: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    flood: list = field(default_factory=list)
    flood_skip: str | None = None
    memory: dict = field(default_factory=dict)
    idle: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def median(self, config, what):
        """The median over the rounds of one figure (rps, p50, p99, cpu, user_cpu, sys_cpu,
        auth_cpu)."""
        return median(getattr(r, what) for r in self.rounds if r.config == config)

    def label(self, config):
        return self.labels.get(config, config)

    def group(self, name):
        return self.groups.get(name, [])


def read_facts(path, run):
    """facts.tsv, one fact a line, tab-separated:

    meta KEY VALUE            run date, command line, machine, versions, settings
    config NAME LABEL         the configurations, in bench/run's order
    skip NAME REASON          a configuration not measured, and why
    auth NAME                 a configuration whose Tollgate share of CPU was counted
    group NAME MEMBER...      peers, extauthz, variants, transports
    flood ROUND base_requests base_duration_us base_p99_us flood_requests
          flood_duration_us flood_p99_us grants_requests grants_non2xx grants_duration_us
    flood_skip REASON         the login flood was not run, and why
    memory KEY KIB            idle_rss (Tollgate just started), flood_rss (after the flood)
    idle NAME seen rss_kib pss_kib base_rss_kib base_pss_kib peak_kib
    note TEXT                 a line printed under the variants table
    """
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            kind, rest = f[0], f[1:]
            if kind == "meta":
                run.meta[rest[0]] = rest[1] if len(rest) > 1 else ""
            elif kind == "config":
                run.configs.append(rest[0])
                run.labels[rest[0]] = rest[1]
            elif kind == "skip":
                run.skip[rest[0]] = rest[1]
            elif kind == "auth":
                run.auth.add(rest[0])
            elif kind == "group":
                run.groups[rest[0]] = [m for m in rest[1:] if m]
            elif kind == "flood":
                v = [num(x, int) for x in rest]
                run.flood.append(FloodRound(*v))
            elif kind == "flood_skip":
                run.flood_skip = rest[0]
            elif kind == "memory":
                run.memory[rest[0]] = num(rest[1], int)
            elif kind == "idle":
                run.idle[rest[0]] = Idle(*[int(x) for x in rest[1:]])
            elif kind == "note":
                run.notes.append(rest[0] if rest else "")
            elif kind:
                raise ValueError(f"facts.tsv: unknown kind {kind!r}")


def load(work):
    run = Run(rounds=read_rounds(os.path.join(work, "rounds.tsv")))
    read_facts(os.path.join(work, "facts.tsv"), run)
    return run


# ---------------------------------------------------------------------------------------
# The report.


def table_head():
    return ["| Configuration | req/s | × direct | × nginx plain | p50 ms | p99 ms | p99 × nginx | CPU µs/req | CPU × nginx |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]


def table_row(run, c, label):
    """One row of a main results table, ratios to direct and to nginx plain."""
    if c in run.skip:
        return f"| {label} | skipped: {run.skip[c]} ||||||||"
    rps, p50, p99, cpu = (run.median(c, w) for w in ("rps", "p50", "p99", "cpu"))
    d_rps, n_rps = run.median("direct", "rps"), run.median("nginx", "rps")
    n_p99, n_cpu = run.median("nginx", "p99"), run.median("nginx", "cpu")
    return (f"| {label} | {fmt(rps, 0)} | {fmt(ratio(rps, d_rps), 2)} | {fmt(ratio(rps, n_rps), 2)} | "
            f"{ms(p50)} | {ms(p99)} | {fmt(ratio(p99, n_p99), 2)} | {fmt(cpu, 2)} | {fmt(ratio(cpu, n_cpu), 2)} |")


def header(run):
    m = run.meta
    mem = num(m.get("mem_kib"))
    mem_gib = "?" if mem is None else f"{mem / 1048576:.1f}"
    return [
        f"Run: {m.get('date', '?')}, `{m.get('command', 'bench/run')}` (niceness {m.get('niceness', '?')}) — "
        f"{m.get('rounds', '?')} round(s) of {m.get('duration', '?')} s per configuration, run alternately; medians of the rounds.",
        "",
        f"Machine: {m.get('cores', '?')} cores, {m.get('cpu_model', '?')}, {mem_gib} GiB RAM, {m.get('kernel', '?')}.",
        f"Versions: {m.get('nginx', '?')}, wrk {m.get('wrk', '?')}, {m.get('rustc', 'rustc ?')}, Tollgate {m.get('commit', '?')}.",
        f"Peers: {m.get('peers', 'none installed')}.",
        f"Load: `wrk -t{m.get('threads', '?')} -c{m.get('conns', '?')} -d{m.get('duration', '?')}s --timeout 5s`, keep-alive, "
        "GET of a ~100-byte upstream answer (nginx `return 200`, 1 worker). Every proxy runs 2 workers (nginx: 2 worker "
        "processes; Envoy `--concurrency 2`; HAProxy `nbthread 2`; Tollgate: its default, one per core; the hyper floor: "
        "one current-thread runtime per core, as Tollgate's workers). Access logs off everywhere.",
        f"Tokens: RS256 (2048-bit key made by `tollgate keys generate`), ~{m.get('token_bytes', '?')} bytes; every JWT "
        "configuration checks the signature with the kid pinned, iss, aud and exp (30 s skew), and injects the identity headers.",
    ]


def main_tables(run):
    pool = run.meta.get("pool_size", "?")
    out = ["#### One token on every request (one busy client)", "", *table_head()]
    out += [table_row(run, c, run.label(c)) for c in run.configs if not c.endswith("_pool")]
    out += ["", f"#### A pool of {pool} distinct valid tokens in rotation ({pool} active users)", "", *table_head()]
    for c in ("nginx", "floor"):
        if c in run.configs:
            out.append(table_row(run, c, f"{run.label(c)} (no auth; the same rounds as above)"))
    out += [table_row(run, c, run.label(c)) for c in run.configs if c.endswith("_pool")]
    out.append("")
    return out


def extauthz_table(run):
    """Envoy with Tollgate as its ext_authz service beside Envoy jwt_authn (with and without
    its cache), nginx auth_request and Tollgate's own JWT route, in both token workloads;
    CPU over every process of the configuration, and Tollgate's share of it."""
    if all(c in run.skip for c in run.group("extauthz")):
        return []
    out = []
    n_rps, n_cpu = run.median("nginx", "rps"), run.median("nginx", "cpu")
    for sfx in ("", "_pool"):
        title = "one token" if not sfx else f"the pool of {run.meta.get('pool_size', '?')} tokens"
        e_rps, e_cpu = run.median("envoy" + sfx, "rps"), run.median("envoy" + sfx, "cpu")
        ec_rps, ec_cpu = run.median("envoy_cache" + sfx, "rps"), run.median("envoy_cache" + sfx, "cpu")
        j_cpu = run.median("jwt" + sfx, "cpu")
        out += [f"#### Envoy + Tollgate ext_authz beside Envoy jwt_authn ({title})", "",
                "| Configuration | req/s | × Envoy jwt_authn | × Envoy + cache | × nginx plain | p99 ms | CPU µs/req | "
                "CPU × Envoy jwt_authn | CPU × Envoy + cache | CPU × nginx | Tollgate's CPU µs/req | Tollgate's × its JWT route |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for base in ("envoy", "envoy_cache", "extauthz_grpc", "extauthz_http", "authreq", "jwt"):
            c = base + sfx
            if c not in run.labels:
                continue
            if c in run.skip:
                out.append(f"| {run.label(c)} | skipped: {run.skip[c]} |||||||||||")
                continue
            rps, p99, cpu = run.median(c, "rps"), run.median(c, "p99"), run.median(c, "cpu")
            if base == "jwt":
                tcpu = cpu
            else:
                tcpu = run.median(c, "auth_cpu") if c in run.auth else None
            out.append(f"| {run.label(c)} | {fmt(rps, 0)} | {fmt(ratio(rps, e_rps), 2)} | {fmt(ratio(rps, ec_rps), 2)} | "
                       f"{fmt(ratio(rps, n_rps), 2)} | {ms(p99)} | {fmt(cpu, 2)} | {fmt(ratio(cpu, e_cpu), 2)} | "
                       f"{fmt(ratio(cpu, ec_cpu), 2)} | {fmt(ratio(cpu, n_cpu), 2)} | {fmt(tcpu, 2)} | {fmt(ratio(tcpu, j_cpu), 2)} |")
        out.append("")
    out += ["CPU µs/req counts every process of the configuration: Envoy and Tollgate together for ext_authz, nginx and "
            "Tollgate for auth_request; \"Tollgate's CPU\" is the Tollgate process alone, per request decided, beside its "
            "CPU per request on its own JWT route (where it also proxies). The ext_authz configurations ask the JWT instance: "
            "gRPC on its listen.ext_authz port, HTTP on its forward-auth endpoint (`path_prefix: /auth/verify`).", ""]
    return out


def beside_table(run, title, base, rows, name):
    """A table of configurations beside one of them (`base`): ratios to it and to nginx."""
    if all(c in run.skip for c in rows):
        return []
    b_rps, b_p99, b_cpu = run.median(base, "rps"), run.median(base, "p99"), run.median(base, "cpu")
    n_rps, n_cpu = run.median("nginx", "rps"), run.median("nginx", "cpu")
    out = [title, "",
           f"| Configuration | req/s | × {name} | × nginx plain | p99 ms | p99 × {name} | CPU µs/req | CPU × {name} | "
           f"CPU − {name} µs | CPU × nginx |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in [base, *rows]:
        if c in run.skip:
            out.append(f"| {run.label(c)} | skipped: {run.skip[c]} |||||||||")
            continue
        rps, p99, cpu = run.median(c, "rps"), run.median(c, "p99"), run.median(c, "cpu")
        out.append(f"| {run.label(c)} | {fmt(rps, 0)} | {fmt(ratio(rps, b_rps), 2)} | {fmt(ratio(rps, n_rps), 2)} | "
                   f"{ms(p99)} | {fmt(ratio(p99, b_p99), 2)} | {fmt(cpu, 2)} | {fmt(ratio(cpu, b_cpu), 2)} | "
                   f"{diff(cpu, b_cpu)} | {fmt(ratio(cpu, n_cpu), 2)} |")
    out.append("")
    return out


def variants_table(run):
    """The JWT route with one thing added, beside `jwt`, and what the run noted about them."""
    out = beside_table(run, "#### The JWT route with one thing added (one token)", "jwt", run.group("variants"), "JWT")
    if out and run.notes:
        out += [*run.notes, ""]
    return out


def transports_table(run):
    """bench/upstreams.sh's public routes over HTTPS and h2c, beside the plain public route."""
    return beside_table(run, "#### The public route over other upstream transports (no token)", "public",
                        run.group("transports"), "public")


FLOOR_ROWS = ("floor_contract", "nginx", "public", "jwt", "opaque", "jwt_pool")


def floor_table(run):
    """Tollgate's routes (and nginx plain) beside the hyper floor (bench/floor), same rounds."""
    if "floor" not in run.configs:
        return []
    f_rps, f_p99, f_cpu = run.median("floor", "rps"), run.median("floor", "p99"), run.median("floor", "cpu")
    out = ["#### Beside the hyper floor (the same rounds)", "",
           "| Configuration | req/s | × floor | p99 ms | p99 × floor | CPU µs/req | user µs/req | system µs/req | "
           "CPU × floor | CPU − floor µs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ("floor", *FLOOR_ROWS):
        if c not in run.configs:
            continue
        label = run.label(c)
        if c.endswith("_pool"):
            label += f" (the pool of {run.meta.get('pool_size', '?')} tokens)"
        if c in run.skip:
            out.append(f"| {label} | skipped: {run.skip[c]} |||||||||")
            continue
        rps, p99, cpu = run.median(c, "rps"), run.median(c, "p99"), run.median(c, "cpu")
        user, system = run.median(c, "user_cpu"), run.median(c, "sys_cpu")
        out.append(f"| {label} | {fmt(rps, 0)} | {fmt(ratio(rps, f_rps), 2)} | {ms(p99)} | {fmt(ratio(p99, f_p99), 2)} | "
                   f"{fmt(cpu, 2)} | {fmt(user, 2)} | {fmt(system, 2)} | {fmt(ratio(cpu, f_cpu), 2)} | "
                   f"{diff(cpu, f_cpu)} |")
    out += ["", "The hyper floor is bench/floor: hyper 1's HTTP/1.1 server and `client::conn::http1`, one upstream "
            "connection per client connection, one header added (`x-user-id`), bodies streamed, on one current-thread "
            "runtime per core like Tollgate's workers; no routing, authentication, limits, metrics or logs, and the "
            "system allocator. What Tollgate costs beyond it is Tollgate's own code. Issue 23 sets its targets on "
            "instructions per request (`bench/callgrind`, which counts the floor in the same run); CPU time here is the "
            "same-run check. User and system are the two shares of the CPU figure (each the median of its own "
            "rounds): where the time is, in the gateway's code or in the kernel's socket work. The contract floor is "
            "the same binary doing the header edits SPEC.md requires on the JWT route (`--contract=jwt`: the retry "
            "copy, hop-by-hop and identity names stripped, `Authorization` out, the identity, `X-Forwarded-*`, "
            "`X-Request-Id` and `Host` in, the answer cleaned and stamped) and nothing else: what any gateway that "
            "keeps the contract on hyper costs before its own decisions.", ""]
    return out


def per_round(run):
    out = ["Per round (req/s, p99 µs):", "", "```"]
    for r in run.rounds:
        auth = f"  (Tollgate {fmt(r.auth_cpu, 2)})" if r.auth_ticks is not None else ""
        split = f" (user {fmt(r.user_cpu, 2)}, system {fmt(r.sys_cpu, 2)})" if r.sys_ticks is not None else ""
        out.append(f"{r.config:<18} round {r.round}  {fmt(r.rps, 0):>8} req/s  p99 {r.p99:>6} us  "
                   f"cpu {fmt(r.cpu, 2):>6} us/req{split}{auth}")
    out += ["```", ""]
    return out


def flood_ratio(run):
    """The median over the rounds of the JWT route's p99 during the flood ÷ alone."""
    r = median(f.p99_ratio for f in run.flood)
    return None if r is None else round(r, 2)


def flood_section(run):
    out = ["### Login flood", ""]
    if run.flood_skip is not None:
        out.append(f"skipped: {run.flood_skip}")
    elif not run.flood:
        out.append("not run (BENCH_ONLY without BENCH_EXTRAS=1)")
    else:
        out += ["| Round | JWT alone req/s | p99 ms | during the flood req/s | p99 ms | password grants (16 connections) | p99 × |",
                "|---:|---:|---:|---:|---:|---|---:|",
                *(f.row() for f in run.flood), "",
                f"Median of the rounds: the JWT route p99 rose {fmt(flood_ratio(run), 2)}× during the login flood."]
    out.append("")
    return out


def memory_section(run):
    settle = run.meta.get("idle_settle", "?")
    out = ["### Memory", "",
           f"- Idle RSS (Tollgate just started, store open, nothing served): {mib(run.memory.get('idle_rss'))} MiB"]
    for n in ("tollgate", "nginx"):
        i = run.idle.get(n)
        if i is None:
            continue
        out.append(f"- {n} with {i.seen} idle keep-alive client connections (one request each, then idle; a fresh "
                   f"instance, RSS {mib(i.base_rss)} MiB before they opened): RSS {mib(i.rss)} MiB {settle} s after they "
                   f"were all open (peak {mib(i.peak)} MiB while the first requests were served), PSS {mib(i.pss)} MiB")
    if "nginx" in run.idle:
        out.append("  (nginx: master + 2 workers summed. RSS counts pages shared between processes once per process; PSS "
                   "splits them, also with the other instances of the same binary this run has started, so only RSS is judged.)")
    if run.memory.get("flood_rss") is not None:
        out.append(f"- RSS of the JWT instance after the rounds and the login flood: {mib(run.memory['flood_rss'])} MiB")
    out.append("")
    return out


def best_peer(run, suffix):
    """(cpu, config) of the measured JWT-validating peer with the lowest CPU per request
    (the later one on a tie); (None, None) when none was measured."""
    best, name = None, None
    for p in run.group("peers"):
        c = p + suffix
        if c in run.skip:
            continue
        v = run.median(c, "cpu")
        if v is None:
            continue
        if best is None or v <= best:
            best, name = v, c
    return best, name


def targets(run):
    """Issues 6, 14, 20 and 23's targets, judged on this run's medians."""
    med = run.median
    j_rps, n_rps, a_rps, o_rps = (med(c, "rps") for c in ("jwt", "nginx", "authreq", "opaque"))
    j_cpu, n_cpu, jp_cpu = med("jwt", "cpu"), med("nginx", "cpu"), med("jwt_pool", "cpu")
    out = ["### Targets", "", "| Target | Measured | |", "|---|---|---|"]

    bp, bn = best_peer(run, "_pool")
    r = ratio(jp_cpu, bp)
    out.append(f"| (14) pool workload: Tollgate CPU/request ≤ ½ of every JWT-validating peer's | {fmt(jp_cpu, 2)} µs vs the "
               f"cheapest peer's {fmt(bp, 2)} µs ({run.label(bn) if bn else 'none measured'}): {fmt(r, 2)}× | {verdict(check(r, 'le', 0.5))} |")
    bp, bn = best_peer(run, "")
    r = ratio(j_cpu, bp)
    out.append(f"| (14) one-token workload: Tollgate CPU/request ≤ the best peer's | {fmt(j_cpu, 2)} µs vs {fmt(bp, 2)} µs "
               f"({run.label(bn) if bn else 'none measured'}): {fmt(r, 2)}× | {verdict(check(r, 'le', 1.0))} |")
    r = ratio(j_rps, n_rps)
    out.append(f"| (6, 14) JWT ≥ 1.0× nginx plain throughput | {fmt(r, 2)}× | {verdict(check(r, 'ge', 1.0))} |")
    r = ratio(j_cpu, n_cpu)
    out.append(f"| (6, 14) JWT CPU per request ≤ nginx plain's | {fmt(j_cpu, 2)} vs {fmt(n_cpu, 2)} µs ({fmt(r, 2)}×) | "
               f"{verdict(check(r, 'le', 1.0))} |")
    j_p99, n_p99 = med("jwt", "p99"), med("nginx", "p99")
    r = ratio(j_p99, n_p99)
    out.append(f"| (6, 14) JWT p99 ≤ nginx plain p99 | {ms(j_p99)} vs {ms(n_p99)} ms ({fmt(r, 2)}×) | {verdict(check(r, 'le', 1.0))} |")

    # Issue 23: Tollgate beside the hyper floor. Its targets are on instructions per request
    # (bench/callgrind); the CPU time of the same run is judged here by the same bounds.
    f_cpu = med("floor", "cpu")
    pool = run.meta.get("pool_size", "?")
    for c, what, bound, note in (
            ("jwt", "JWT route, one token", 1.2, " (CPU time; issue 23 counts instructions: bench/callgrind)"),
            ("jwt_pool", f"JWT route, pool of {pool} tokens", 1.25, ""),
            ("public", "public route", 1.1, "")):
        cpu = med(c, "cpu")
        r = ratio(cpu, f_cpu)
        out.append(f"| (23) {what}: CPU/request ≤ {bound}× the hyper floor's{note} | {fmt(cpu, 2)} vs {fmt(f_cpu, 2)} µs "
                   f"({fmt(r, 2)}×) | {verdict(check(r, 'le', bound))} |")

    tg, ng = run.idle.get("tollgate"), run.idle.get("nginx")
    tg_rss, ng_rss = (tg.rss if tg else None), (ng.rss if ng else None)
    tg_grow = tg.rss - tg.base_rss if tg else None
    ng_grow = ng.rss - ng.base_rss if ng else None
    m_r, m_g = ratio(tg_rss, ng_rss), ratio(tg_grow, ng_grow)
    m_ok = check(m_r, "le", 2.0)
    if not (tg and tg.seen >= 10000 and ng and ng.seen >= 10000):
        m_ok = None
    settle = run.meta.get("idle_settle", "?")
    out.append(f"| (14) 10,000 idle connections: Tollgate's RSS ≤ 2× nginx's | {mib(tg_rss)} vs {mib(ng_rss)} MiB "
               f"({fmt(m_r, 2)}×) {settle} s on; growth over the fresh process {mib(tg_grow)} vs {mib(ng_grow)} MiB "
               f"({fmt(m_g, 2)}×); peak {mib(tg.peak if tg else None)} vs {mib(ng.peak if ng else None)} MiB | {verdict(m_ok)} |")
    r = ratio(j_rps, a_rps)
    out.append(f"| (6) JWT ≥ 2× nginx auth_request + forward-auth | {fmt(r, 2)}× | {verdict(check(r, 'ge', 2.0))} |")
    r = ratio(o_rps, j_rps)
    out.append(f"| (6) Opaque (warm cache) within 10% of JWT | {fmt(r, 2)}× | {verdict(check(r, 'ge', 0.9))} |")
    xg = med("extauthz_grpc", "auth_cpu")
    r = ratio(xg, j_cpu)
    out.append(f"| (20) ext_authz gRPC, one (cached) token: Tollgate's CPU per check ≤ its CPU per proxied JWT request | "
               f"{fmt(xg, 2)} vs {fmt(j_cpu, 2)} µs ({fmt(r, 2)}×; CPU time on a shared machine: bench/callgrind's grpc mode "
               f"is the stable figure) | {verdict(check(r, 'le', 1.0))} |")
    fr = flood_ratio(run)
    out.append(f"| (6) Login flood raises JWT p99 ≤ 2× | {fmt(fr, 2)}× | {verdict(check(fr, 'le', 2.0))} |")
    idle = mib_value(run.memory.get("idle_rss"))
    out.append(f"| (6) Idle RSS ≤ 20 MiB | {fmt(idle, 1)} MiB | {verdict(check(idle, 'le', 20))} |")
    conns = mib_value(tg_rss)
    ok = check(conns, "le", 150) if tg and tg.seen >= 10000 else None
    out.append(f"| (6) 10,000 idle connections ≤ 150 MiB | {fmt(conns, 1)} MiB ({tg.seen if tg else 0} connections) | {verdict(ok)} |")
    return out


def report(run):
    """The results section, as bench/run prints it and writes it into BENCHMARKS.md."""
    out = [*header(run), ""]
    out += main_tables(run)
    out += extauthz_table(run)
    out += variants_table(run)
    out += transports_table(run)
    out += floor_table(run)
    out += ["CPU is the proxy's user + system time from /proc/PID/stat over the run divided by the requests served "
            "(nginx: master + workers; auth_request: nginx + Tollgate together; ext_authz: Envoy + Tollgate together).", ""]
    out += per_round(run)
    out += flood_section(run)
    out += memory_section(run)
    out += targets(run)
    return "\n".join(out) + "\n"


def splice(text, part):
    """text with what lies between the bench:results markers replaced by part."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ValueError("no bench:results markers")
    head = text[: begin + len(BEGIN)]
    if not part.endswith("\n"):
        part += "\n"
    return head + "\n" + part + text[end:]


# ---------------------------------------------------------------------------------------


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "report" and len(args) == 1:
        sys.stdout.write(report(load(args[0])))
    elif cmd == "splice" and len(args) == 2:
        with open(args[0], encoding="utf-8") as fh:
            text = fh.read()
        with open(args[1], encoding="utf-8") as fh:
            part = fh.read()
        try:
            new = splice(text, part)
        except ValueError as e:
            print(f"stats.py: {args[0]}: {e}", file=sys.stderr)
            return 1
        tmp = args[0] + ".new"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.replace(tmp, args[0])
    elif cmd == "round" and len(args) == 5:
        requests, duration, ticks, auth, hz = (num(a, int) for a in args)
        print(fmt(rate(requests, duration), 0), fmt(per_request_us(ticks, hz, requests), 2),
              fmt(per_request_us(auth, hz, requests), 2))
    elif cmd == "ratio" and len(args) == 2:
        print(fmt(ratio(num(args[0]), num(args[1])), 2))
    elif cmd == "rate" and len(args) == 2:
        print(fmt(rate(num(args[0], int), num(args[1], int)), 0))
    elif cmd == "mib" and len(args) == 1:
        print(mib(num(args[0], int)))
    else:
        print(__doc__.split("Commands:")[1].split("Every figure")[0].rstrip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
