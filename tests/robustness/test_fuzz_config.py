"""Property tests of the config parser: whatever a user types (``--set`` overrides, YAML files), the only
exception that leaves ``parse_override`` / ``apply_overrides`` / ``resolve_config`` / ``read_yaml`` is a
:class:`~semsynth.errors.SemsynthError` with a message, never a crash.

Derandomized (the same examples on every run) and bounded: the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsynth.config import (
    _DATACLASS_SECTIONS,
    SECTIONS,
    apply_overrides,
    load_config,
    parse_override,
    read_yaml,
    resolve_config,
)
from semsynth.data import DATASETS
from semsynth.errors import SemsynthError
from semsynth.models import DISCRIMINATORS, ENCODERS, GENERATORS
from tests.helpers import TINY_RAW

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# -- what a hostile user types ----------------------------------------------------------------------------------

# every real key, so that values reach the deepest checks
REAL_KEYS = sorted(
    {f"{sec}.{f.name}" for sec, cls in _DATACLASS_SECTIONS.items() for f in dataclasses.fields(cls)}
    | {f"generator.{k}" for k in GENERATORS.parameters("scgan")}
    | {f"discriminator.{k}" for n in DISCRIMINATORS.names() for k in DISCRIMINATORS.parameters(n)}
    | {f"encoder.{k}" for k in ENCODERS.parameters("conv")}
    | {f"data.{k}" for k in DATASETS.parameters("synthetic-faces")}
    | {"name", "generator.name", "discriminator.name", "encoder.name", "data.name"} | set(SECTIONS)
)
KEY_PARTS = sorted({p for k in REAL_KEYS for p in k.split(".")} | {"", " ", "x", "name", "0", "é", "ü.ß"})

# values that have broken parsers before: non-finite and huge numbers, YAML tags, timestamps, anchors, nesting
NASTY_VALUES = [
    ".nan", ".NaN", ".inf", "-.inf", "+.inf", "nan", "inf", "1e400", "1.0e+400", "-1", "0", "-0.0", "1.5",
    "9" * 40, "-" + "9" * 40, "0x10", "0o17", "1_000", "true", "false", "yes", "no", "on", "null", "~", "",
    " ", "''", '""', "[]", "{}", "[1, 2]", "[64, 64]", "[64, .nan]", "[[1]]", "{a: 1}", "{1: 2}", "{name: scgan}",
    "{name: [1]}", "{name: null}", "{name: fpse, width: 0}", "{name: multiscale}", "{name: conv, width: .inf}",
    "{? [1, 2] : 3}", "2020-13-45", "2020-01-01", "12:30:00", "!!binary xyz", "!!float abc", "!!int 1.5",
    "!!python/object:os.system ls", "&a [*a]", "*undefined", "[" * 200 + "]" * 200, "a: b: c", "- 1\n- 2",
    "'unterminated", "{a: [1, 2}", "\x00", "\t", "é", "名前", "\U0001F600", "cuda:x", "cuda:١", "../x", "a/b",
    "scgan", "fpse", "multiscale", "conv", "synthetic-faces", "ade20k", "label", "noise", "more", "softmax",
    # an alias bomb: 10**8 elements when expanded, a few hundred bytes when shared
    ("[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
     "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e], "
     "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f], [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]]"),
]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
python_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()),
                                                                inner, max_size=3),
    max_leaves=8,
)


def _dump(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


# near-valid values too, so that examples also pass validation and reach the shape check of the networks
plausible_texts = st.one_of(
    st.integers(min_value=-2, max_value=300).map(str),
    st.floats(min_value=-2, max_value=300, allow_nan=False).map(repr),
    st.sampled_from(["true", "false", "null", "1", "2", "4", "8", "32", "64", "96", "128", "0.05", "0.5"]),
)
value_texts = st.one_of(plausible_texts, plausible_texts, st.sampled_from(NASTY_VALUES), st.text(max_size=16),
                        python_values.map(_dump))
keys = st.one_of(
    st.sampled_from(REAL_KEYS),
    st.lists(st.sampled_from(KEY_PARTS), min_size=1, max_size=4).map(".".join),
    st.text(max_size=12),
)
override_texts = st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, value_texts), st.text(max_size=24))


def _finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_everywhere(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_everywhere(v) for v in value)
    return True


def _check_resolved(cfg) -> None:
    """What a successful resolution promises: plain, finite values that YAML can write."""
    d = cfg.to_dict()
    assert _finite_everywhere(d), d
    yaml.safe_dump(d)


# -- properties ---------------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(override_texts)
def test_parse_override_only_raises_semsynth_errors(text):
    try:
        keys_, _ = parse_override(text)
    except SemsynthError as e:
        assert str(e).startswith("--set "), str(e)
        return
    assert keys_ and all(isinstance(k, str) and k and k == k.strip() for k in keys_)


@settings(FUZZ, max_examples=300)
@given(st.one_of(python_values, st.dictionaries(st.sampled_from([*SECTIONS, "name"]), python_values, max_size=4)),
       st.lists(override_texts, max_size=3))
def test_apply_overrides_on_any_structure_only_raises_semsynth_errors(raw, overrides):
    before = copy.deepcopy(raw)
    try:
        out = apply_overrides(raw, overrides)
    except SemsynthError:
        return
    finally:
        assert repr(raw) == repr(before)  # the input is never changed
    assert isinstance(out, dict)


@settings(FUZZ, max_examples=150)
@given(st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(REAL_KEYS), value_texts), min_size=1,
                max_size=3))
def test_overrides_of_a_valid_config_fail_only_with_errors_that_name_the_set_argument(overrides):
    try:
        cfg = resolve_config(TINY_RAW, overrides)
    except SemsynthError as e:
        # TINY_RAW is valid, so whatever fails was caused by an override, and the message says which
        assert str(e).startswith("--set "), str(e)
        return
    _check_resolved(cfg)


def _section(sec: str):
    """A section as a user may botch it: replaced by any value, or TINY_RAW's with a few keys set to any value."""
    base = TINY_RAW.get(sec) if isinstance(TINY_RAW.get(sec), dict) else {}
    names = sorted({k.split(".", 1)[1] for k in REAL_KEYS if k.startswith(sec + ".")} | {"x", ""})
    return st.one_of(python_values,
                     st.dictionaries(st.sampled_from(names) if names else st.text(max_size=4), python_values,
                                     min_size=1, max_size=2).map(lambda d: {**base, **d}))


config_edits = st.lists(st.sampled_from([*SECTIONS, "name", "extra"]), min_size=1, max_size=2, unique=True).flatmap(
    lambda secs: st.fixed_dictionaries({sec: _section(sec) for sec in secs}))


@settings(FUZZ, max_examples=150)
@given(config_edits)
def test_random_config_structures_only_raise_semsynth_errors(edits):
    raw = {**copy.deepcopy(TINY_RAW), **edits}
    try:
        cfg = resolve_config(raw)
    except SemsynthError:
        return
    _check_resolved(cfg)


yaml_documents = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(NASTY_VALUES + ["data:", "generator:", "  name: scgan", "train: {batch_size: 2}",
                                             "- x", "? a", ": b", "  - 1", "%YAML 1.1", "---", "...", "#"]),
             max_size=6).map("\n".join),
    python_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    config_edits.map(lambda d: yaml.safe_dump({**TINY_RAW, **d}, allow_unicode=True)),
)


@settings(FUZZ, max_examples=250)
@given(st.one_of(yaml_documents, st.binary(max_size=40)))
def test_read_yaml_and_load_config_of_random_documents_only_raise_semsynth_errors(doc):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        if isinstance(doc, bytes):
            p.write_bytes(doc)
        else:
            p.write_text(doc, encoding="utf-8", errors="surrogatepass")
        try:
            raw = read_yaml(p)
        except SemsynthError as e:
            assert str(e).startswith(str(p)), str(e)
            return
        assert isinstance(raw, dict) and all(isinstance(k, str) for k in raw)
        try:
            load_config(p)
        except SemsynthError as e:
            assert str(e).startswith(str(p)), str(e)  # no --set given: the file is to blame
