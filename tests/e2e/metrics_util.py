"""Scrape posternd's Prometheus endpoint and read the exposition strictly.

parse_exposition() is a strict reader of the text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/): every line
is a HELP, a TYPE or a sample; a family has one HELP and one TYPE, before
its samples; a sample belongs to a declared family (a histogram's
_bucket, _sum and _count included); names and label names match the data
model's grammar; label values are quoted with \\, \" and \\n escapes only;
no series is given twice; values are numbers; counters and buckets are
not negative; a histogram's buckets are cumulative, end with le="+Inf",
and that bucket equals _count.  Any breach raises ValueError.
"""
import math
import re
import subprocess

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
HELP_RE = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|"
                     r"untyped)$")
SAMPLE_RE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?$")
PAIR_RE = re.compile(rf'({LABEL})="((?:[^"\\\n]|\\[\\"n])*)"')


def _labels(text):
    out = {}
    if text is None or text == "":
        return out
    pos = 0
    while True:
        m = PAIR_RE.match(text, pos)
        if not m:
            raise ValueError(f"bad labels {text!r} at {pos}")
        name = m.group(1)
        if name in out:
            raise ValueError(f"label {name} twice in {text!r}")
        out[name] = re.sub(r'\\(.)', lambda e: "\n" if e.group(1) == "n"
                           else e.group(1), m.group(2))
        pos = m.end()
        if pos == len(text):
            return out
        if text[pos] != ",":
            raise ValueError(f"bad labels {text!r} at {pos}")
        pos += 1


def _number(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf"))
    if not re.match(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$", text):
        raise ValueError(f"bad value {text!r}")
    return float(text)


def parse_exposition(text):
    """{(name, frozenset(labels.items())): value} and {family: type}."""
    if not text.endswith("\n"):
        raise ValueError("the exposition does not end with a newline")
    types, helps, samples = {}, {}, {}
    seen_samples = set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if m:
                if m.group(1) in helps:
                    raise ValueError(f"line {n}: HELP of {m.group(1)} twice")
                if m.group(1) in seen_samples:
                    raise ValueError(f"line {n}: HELP after the samples")
                helps[m.group(1)] = m.group(2)
                continue
            m = TYPE_RE.match(line)
            if m:
                if m.group(1) in types:
                    raise ValueError(f"line {n}: TYPE of {m.group(1)} twice")
                if m.group(1) in seen_samples:
                    raise ValueError(f"line {n}: TYPE after the samples")
                types[m.group(1)] = m.group(2)
                continue
            raise ValueError(f"line {n}: a comment we do not write: {line!r}")
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"line {n}: not a sample: {line!r}")
        name, labels = m.group(1), _labels(m.group(2))
        value = _number(m.group(3))
        family = name
        if name not in types:
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[:-len(suffix)] if name.endswith(suffix) else None
                if base and types.get(base) == "histogram":
                    family = base
        if family not in types:
            raise ValueError(f"line {n}: {name} has no TYPE before it")
        if family not in helps:
            raise ValueError(f"line {n}: {family} has no HELP")
        if types[family] == "histogram" and name == family:
            raise ValueError(f"line {n}: a histogram sample without suffix")
        if name.endswith("_bucket") and "le" not in labels:
            raise ValueError(f"line {n}: a bucket without le")
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError(f"line {n}: {line!r} given twice")
        if types[family] in ("counter", "histogram") and value < 0:
            raise ValueError(f"line {n}: negative {types[family]}")
        if types[family] == "counter" and not name.endswith("_total"):
            raise ValueError(f"line {n}: counter {name} without _total")
        samples[key] = value
        seen_samples.add(family)
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        buckets = sorted(((_number(dict(k[1])["le"]), v)
                          for k, v in samples.items()
                          if k[0] == fam + "_bucket"), key=lambda b: b[0])
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError(f"{fam}: no le=\"+Inf\" bucket")
        for (_, a), (_, b) in zip(buckets, buckets[1:]):
            if b < a:
                raise ValueError(f"{fam}: buckets not cumulative")
        count = samples.get((fam + "_count", frozenset()))
        if count is None or (fam + "_sum", frozenset()) not in samples:
            raise ValueError(f"{fam}: no _sum or _count")
        if count != buckets[-1][1]:
            raise ValueError(f"{fam}: +Inf bucket {buckets[-1][1]} != "
                             f"count {count}")
    return samples, types


class Scrape:
    """One scrape: value(name, **labels) -> float (KeyError if absent)."""

    def __init__(self, text):
        self.text = text
        self.samples, self.types = parse_exposition(text)

    def value(self, name, **labels):
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name, default=0, **labels):
        return self.samples.get((name, frozenset(labels.items())), default)

    def series(self, name):
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def curl(url, *args):
    """curl's answer: (status, headers text, body bytes)."""
    p = subprocess.run(["curl", "-sS", "-D", "-", "--max-time", "10",
                        *args, url], capture_output=True, timeout=20)
    if p.returncode != 0:
        raise RuntimeError(f"curl {url}: {p.stderr.decode()}")
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def scrape(port, host="127.0.0.1"):
    status, head, body = curl(f"http://{host}:{port}/metrics")
    if status != 200:
        raise RuntimeError(f"scrape: HTTP {status}")
    return Scrape(body.decode("utf-8"))
