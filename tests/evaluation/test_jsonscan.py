"""The results reader equals json.loads plus the results rules, bit for bit, and fails with one clean line."""
from __future__ import annotations

import json
import math
import random
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mec_cli.errors import MecError
from mec_cli.evaluation import jsonscan
from mec_cli.evaluation.jsonscan import parse_number_tokens, read_results_file, scan_results

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    """Compile (or load from numba's cache) the scanner once, so that no test's timing includes it."""
    scan_results(b'[{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1],'
                 b' "segmentation": {"size": [1, 1], "counts": "1"}}]')
    with pytest.raises(MecError):
        scan_results(b"[1")


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _reference(tok: bytes) -> float:
    """What pycocotools gets: float() of what json.loads gives (an int for integer tokens)."""
    if len(tok) > 4000:  # json.loads refuses to build ints of more than 4300 digits; float() of the text agrees
        return float(tok)
    try:
        return float(json.loads(tok))
    except OverflowError:
        return math.inf


def _assert_exact(tokens):
    values, _ = parse_number_tokens(tokens)
    for tok, v in zip(tokens, values.tolist()):
        assert _bits(v) == _bits(_reference(tok)), (tok, v, _reference(tok))


# --------------------------------------------------------------------------------------------------------------
# Numbers: bit-identical to float()
# --------------------------------------------------------------------------------------------------------------
def test_power_of_five_table_matches_fast_float():
    table = jsonscan._P5.reshape(-1, 2)
    assert table.shape == (651, 2)
    known = {-342: (0xeef453d6923bd65a, 0x113faa2906a13b3f), -2: (0xa3d70a3d70a3d70a, 0x3d70a3d70a3d70a4),
             -1: (0xcccccccccccccccc, 0xcccccccccccccccd), 0: (0x8000000000000000, 0),
             28: (0x813f3978f8940984, 0x4000000000000000)}
    for q, (hi, lo) in known.items():
        assert (int(table[q + 342, 0]), int(table[q + 342, 1])) == (hi, lo)
    for q in range(0, 28):  # 5**q fits 128 bits exactly
        hi, lo = int(table[q + 342, 0]), int(table[q + 342, 1])
        v = (hi << 64) | lo
        assert v >> (v.bit_length() - (5 ** q).bit_length()) == 5 ** q


BOUNDARY = [
    b"0", b"-0", b"0.0", b"-0.0", b"0e5", b"-0E-5", b"1", b"-1", b"1e308", b"1.7976931348623157e308",
    b"1.7976931348623158e308", b"2.2250738585072014e-308", b"2.2250738585072011e-308", b"2.225073858507201e-308",
    b"4.9e-324", b"5e-324", b"2.4703282292062327e-324", b"2.4703282292062328e-324", b"1e-400", b"-1e-400",
    b"9007199254740993", b"9007199254740992", b"9007199254740995", b"9007199254740993.0000000000000001",
    b"9007199254740992.9999999999999999", b"18014398509481985", b"18014398509481987", b"4503599627370497.5",
    b"18446744073709551615", b"18446744073709551616", b"9223372036854775807", b"9223372036854775808",
    b"123456789012345678901234e-30", b"0." + b"0" * 40 + b"1", b"0." + b"0" * 400 + b"1", b"1" + b"0" * 400,
    b"1e23", b"8.988465674311579e307", b"7.2057594037927933e16", b"0.10000000149011612", b"1e22", b"1e-22",
    b"1e" + b"9" * 30, b"1e-" + b"9" * 30, b"1E+2", b"12345678901234567890123456789", b"0.1", b"0.3",
    b"2.9802322387695312e-8", b"3.4028234663852886e38", b"1.401298464324817e-45", b"179769313486231580793728971"
    b"40507489542176581589088080803428034938823766148925208920958720983052856106137513952218426813939154624"
    b"87427640802316216046080064021419838813952054046519014906913613627460713312600637003016146133264931136"
    b"2962208127216726183376896119124206407561312", b"1e400", b"-1e400",
]


def test_boundary_numbers_are_exact():
    _assert_exact(BOUNDARY)
    values, fast = parse_number_tokens([b"0.10000000149011612", b"598.89", b"17", b"1e400", b"5e-324"])
    assert fast.tolist() == [True, True, True, False, False]  # overflow and subnormals go to Python


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=200))
def test_random_doubles_round_trip(xs):
    tokens = []
    for x in xs:
        tokens += [repr(x).encode(), b"%.17e" % x, b"%.20g" % x, b"%.25e" % x]
    _assert_exact(tokens)


@settings(max_examples=200, **SETTINGS)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=200))
def test_float32_derived_values_are_exact_and_fast(xs):
    tokens = [repr(float(np.float32(x))).encode() for x in xs]
    _assert_exact(tokens)
    values, fast = parse_number_tokens(tokens)
    normal = [abs(float(np.float32(x))) >= 2.3e-308 or x == 0 for x in xs]
    assert fast[normal].all()  # what MMDetection writes never needs Python


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.tuples(st.integers(0, 10 ** 40), st.integers(-420, 420), st.integers(0, 45), st.booleans()),
                min_size=1, max_size=100))
def test_random_decimal_strings_are_exact(parts):
    tokens = []
    for mant, exp, point, neg in parts:
        digits = str(mant)
        p = min(point, len(digits))
        sign = b"-" if neg else b""
        tokens.append(sign + f"{digits}e{exp}".encode())
        tokens.append(sign + (digits[:p] or "0").encode() + b"." + (digits[p:] or "0").encode() + f"E{exp:+d}".encode())
        tokens.append(sign + (digits[:p] or "0").encode() + b"." + (digits[p:] or "0").encode())
    _assert_exact(tokens)


def _midpoint_tokens(rng: random.Random, count: int, lo_exp: int, hi_exp: int):
    """Exact decimal midpoints between adjacent doubles, and the decimals just above and below them."""
    tokens = []
    for _ in range(count):
        e = rng.randint(lo_exp, hi_exp)
        m = rng.getrandbits(52) | (1 << 52)
        mid = (Fraction(2 * m + 1) * Fraction(2) ** (e - 1))
        if mid.denominator == 1:
            text = str(mid.numerator)
        else:
            k = mid.denominator.bit_length() - 1
            text = f"{mid.numerator * 5 ** k}e-{k}"
        mant, _, exp = text.partition("e")
        exp = int(exp or 0)
        tokens += [text.encode(), f"{mant}1e{exp - 1}".encode(), f"{mant}0e{exp - 1}".encode()]
        if len(mant) > 1:
            tokens.append(f"{mant[:-1]}e{exp + 1}".encode())
    return tokens


def test_halfway_cases_round_to_even():
    rng = random.Random(1)
    tokens = _midpoint_tokens(rng, 3000, -1074, 970)
    tokens += _midpoint_tokens(rng, 3000, 0, 12)  # integers of up to 19 digits: Eisel-Lemire's tie branch
    tokens += _midpoint_tokens(rng, 3000, -60, 0)
    _assert_exact(tokens)


def test_invalid_tokens_are_not_numbers():
    _, fast = parse_number_tokens([b"01", b"1.", b".5", b"+1", b"-", b"1e", b"1e+", b"--1", b"0x10", b"1_0"])
    assert not fast.any()
    with pytest.raises(MecError, match="malformed JSON"):
        scan_results(b'[{"image_id": 1, "category_id": 1, "score": 01}]')


# --------------------------------------------------------------------------------------------------------------
# Whole documents: equal to json.loads plus the rules
# --------------------------------------------------------------------------------------------------------------
WS = ["", " ", "\n", "\t", "\r\n  "]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4)
                          | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
float32 = st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda v: float(np.float32(v)))
nonneg = st.one_of(st.floats(min_value=0, allow_infinity=False), float32.map(abs), st.integers(0, 10 ** 6))
coord = st.one_of(st.floats(allow_nan=False, allow_infinity=False), float32, st.integers(-10 ** 6, 10 ** 6))
rle_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)
segmentation = st.one_of(
    st.fixed_dictionaries({"size": st.lists(st.integers(0, 10 ** 5), min_size=2, max_size=2), "counts": rle_text}),
    st.fixed_dictionaries({"size": st.lists(st.integers(0, 10 ** 5), min_size=2, max_size=2),
                           "counts": st.lists(st.integers(0, 10 ** 9), max_size=8)}),
    st.lists(st.integers(3, 6).flatmap(lambda k: st.lists(coord, min_size=2 * k, max_size=2 * k)),
             min_size=1, max_size=3),
)


KNOWN = ("image_id", "category_id", "score", "bbox", "segmentation")


@st.composite
def records(draw):
    """A record as (pairs, key order, spelling) with known keys, unknown keys and duplicates."""
    pairs = [("image_id", draw(st.integers(-2 ** 63, 2 ** 63 - 1))),
             ("category_id", draw(st.integers(-2 ** 63, 2 ** 63 - 1))),
             ("score", draw(nonneg))]
    if draw(st.booleans()):
        pairs.append(("bbox", draw(st.one_of(st.just([]), st.tuples(coord, coord, nonneg, nonneg).map(list)))))
    if draw(st.booleans()):
        pairs.append(("segmentation", draw(segmentation)))
    for _ in range(draw(st.integers(0, 2))):
        pairs.append((draw(st.text(max_size=8).filter(lambda k: k not in KNOWN)), draw(json_value)))
    pairs = draw(st.permutations(pairs))
    if draw(st.booleans()):
        # an earlier duplicate of a known key, even with a value that breaks the rules: the last one wins
        key = draw(st.sampled_from(KNOWN))
        k = next((j for j, (name, _) in enumerate(pairs) if name == key), None)
        if k is not None:
            pairs.insert(k, (key, draw(st.one_of(json_value, st.just([1, 2, 3]), st.just(-5.5)))))
    return pairs


def _dump(recs, rng: random.Random, indent) -> str:
    """Serialise records with random whitespace, escaped key spellings and json.dumps values."""
    def ws():
        return rng.choice(WS)

    def key(name):
        if name in ("image_id", "score") and rng.random() < 0.2:
            return '"' + "".join(f"\\u{ord(c):04x}" if c in "_o" else c for c in name) + '"'
        return json.dumps(name, ensure_ascii=rng.random() < 0.5)

    out = ["[", ws()]
    for r, pairs in enumerate(recs):
        if r:
            out += [",", ws()]
        out += ["{", ws()]
        for p, (name, value) in enumerate(pairs):
            if p:
                out += [",", ws()]
            out += [key(name), ws(), ":", ws(), json.dumps(value, indent=indent, ensure_ascii=rng.random() < 0.5), ws()]
        out += ["}", ws()]
    out += ["]", ws()]
    return "".join(out)


def _check_against_json(text: str):
    buf = text.encode("utf-8")
    res = scan_results(buf)
    ref = json.loads(text)
    assert len(res) == len(ref)
    for i, d in enumerate(ref):
        assert res.image_id[i] == d["image_id"] and res.category_id[i] == d["category_id"]
        assert _bits(res.score[i]) == _bits(float(d["score"]))
        box = d.get("bbox", [])
        assert bool(res.has_bbox[i]) == (box != [])
        if box:
            assert [_bits(v) for v in res.bbox[i].tolist()] == [_bits(float(v)) for v in box]
        else:
            assert np.isnan(res.bbox[i]).all()
        seg = d.get("segmentation")
        if seg is None:
            assert res.segm_kind[i] == 0 and res.segmentation(buf, i) is None
            continue
        assert res.segmentation(buf, i) == seg
        assert json.loads(buf[res.segm_span[i, 0]:res.segm_span[i, 1]]) == seg
        if isinstance(seg, dict):
            assert res.rle_size[i].tolist() == seg["size"]
            if isinstance(seg["counts"], str):
                assert res.segm_kind[i] == 1
                assert res.rle_counts(buf, i) == seg["counts"].encode("utf-8")
                raw = buf[res.counts_span[i, 0]:res.counts_span[i, 1]]
                assert bool(res.counts_escaped[i]) == (b"\\" in raw)
            else:
                assert res.segm_kind[i] == 2 and res.counts_span[i].tolist() == [-1, -1]
        else:
            assert res.segm_kind[i] == 3 and res.rle_size[i].tolist() == [-1, -1]
    return res


@settings(max_examples=100, **SETTINGS)
@given(st.lists(records(), max_size=12), st.integers(0, 2 ** 32), st.sampled_from([None, 0, 2]))
def test_random_documents_equal_json_loads(recs, seed, indent):
    _check_against_json(_dump(recs, random.Random(seed), indent))


def test_plain_json_dumps_documents():
    rng = np.random.default_rng(3)
    recs = [{"image_id": int(rng.integers(1, 1000)), "bbox": [float(v) for v in rng.random(4).astype(np.float32)],
             "score": float(np.float32(rng.random())), "category_id": int(rng.integers(1, 1204))} for _ in range(2000)]
    for text in (json.dumps(recs), json.dumps(recs, indent=2), json.dumps(recs, separators=(",", ":"))):
        res = _check_against_json(text)
        assert res.image_id.dtype == np.int64 and res.score.dtype == np.float64 and res.bbox.shape == (2000, 4)
        assert res.segm_kind.dtype == np.int8 and res.segm_span.shape == (2000, 2)


@pytest.mark.parametrize("text", ["[]", " [ ] \n", "[\n]"])
def test_empty_list_gives_empty_arrays(text):
    res = scan_results(text.encode())
    assert len(res) == 0 and res.bbox.shape == (0, 4) and res.counts_span.shape == (0, 2)


def test_buffer_types_and_file(tmp_path):
    text = b'[{"image_id": 3, "category_id": 4, "score": 0.25, "bbox": [1, 2, 3, 4]}]'
    for buf in (text, bytearray(text), memoryview(text), np.frombuffer(text, np.uint8).copy()):
        res = scan_results(buf)
        assert res.image_id.tolist() == [3] and res.bbox[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    path = tmp_path / "results.json"
    path.write_bytes(text)
    res, buf = read_results_file(path)
    assert res.score.tolist() == [0.25] and buf.tobytes() == text and not buf.flags.writeable
    with pytest.raises(MecError, match="no such results file"):
        read_results_file(tmp_path / "missing.json")


def test_unknown_keys_any_value_and_escaped_known_keys():
    text = ('[{"id": {"a": [1, {"b": null}], "c": "x\\"y\\\\z\\u00e9\\ud83d\\ude00"}, "image\\u005fid": 7,'
            ' "category_id": -0, "\\u0073core": 1, "area": NaN, "extra": -Infinity, "ünïcode": "値"}]')
    res = scan_results(text.encode())
    assert res.image_id.tolist() == [7] and res.category_id.tolist() == [0]
    assert res.score.tolist() == [1.0] and not res.has_bbox[0]


def test_negative_zero_rules():
    res = scan_results(b'[{"image_id": 1, "category_id": 1, "score": -0, "bbox": [-0, -0.0, -0, -0.0]}]')
    assert _bits(res.score[0]) == _bits(0.0)  # the integer -0 is 0
    assert [_bits(v) for v in res.bbox[0]] == [_bits(0.0), _bits(-0.0), _bits(0.0), _bits(-0.0)]
    res = scan_results(b'[{"image_id": 1, "category_id": 1, "score": -0.0}]')
    assert _bits(res.score[0]) == _bits(-0.0)
    res = scan_results(b'[{"image_id": 1, "category_id": 1, "score": -1e-400, "bbox": [0, 0, -1e-400, 1e-400]}]')
    assert _bits(res.score[0]) == _bits(-0.0) and res.has_bbox[0]


def test_int64_limits():
    text = b'[{"image_id": 9223372036854775807, "category_id": -9223372036854775808, "score": 2}]'
    res = scan_results(text)
    assert res.image_id.tolist() == [2 ** 63 - 1] and res.category_id.tolist() == [-2 ** 63]
    assert res.score.tolist() == [2.0]  # scores above 1 are allowed


def test_fallback_numbers_inside_documents():
    text = (b'[{"image_id": 1, "category_id": 1, "score": 5e-324, "bbox": [2.2250738585072011e-308, 1e-400, '
            b'123456789012345678901234567890, 0.' + b"0" * 30 + b'1234567890123456789012345]},'
            b' {"image_id": 2, "category_id": 2, "score": 1, "segmentation": [[1e308, 1, 2, 3, 4, 5]]}]')
    res = _check_against_json(text.decode())
    assert _bits(res.score[0]) == _bits(5e-324)


# --------------------------------------------------------------------------------------------------------------
# RLE counts
# --------------------------------------------------------------------------------------------------------------
def test_rle_counts_unescape_like_json_loads():
    counts = ['ab\\cd', 'q"u"o', "s/l/ash", "\b\f\n\r\t", "\u00e9\u4e2d", "\\\\\\", "A\\", "\x1f"]
    recs = [{"image_id": k, "category_id": 1, "score": 0.5, "segmentation": {"counts": c, "size": [4, 5]}}
            for k, c in enumerate(counts)]
    text = json.dumps(recs)
    res = _check_against_json(text)
    assert [res.rle_counts(text.encode(), k) for k in range(len(counts))] == [c.encode() for c in counts]
    assert res.counts_escaped.tolist() == [True, True, False, True, True, True, True, True]
    slashed = b'[{"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": {"size": [1, 2], "counts": "a\\/b"}}]'
    assert scan_results(slashed).rle_counts(slashed, 0) == b"a/b"


def test_real_pycocotools_rles_round_trip():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    recs, expected = [], []
    for k in range(200):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = np.asfortranarray((rng.random((h, w)) < rng.random()).astype(np.uint8))
        rle = mask_utils.encode(mask)
        expected.append(rle["counts"])
        recs.append({"image_id": k, "category_id": 1, "score": 0.5,
                     "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    text = json.dumps(recs).encode()
    assert b"\\\\" in text  # pycocotools' alphabet includes the backslash
    res = scan_results(text)
    for k, counts in enumerate(expected):
        assert res.rle_counts(text, k) == counts
        decoded = mask_utils.decode({"size": res.rle_size[k].tolist(), "counts": res.rle_counts(text, k)})
        assert decoded.shape == tuple(res.rle_size[k].tolist())


def test_rle_counts_needs_kind_1():
    text = b'[{"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": [[0, 0, 1, 0, 1, 1]]}]'
    with pytest.raises(ValueError):
        scan_results(text).rle_counts(text, 0)


# --------------------------------------------------------------------------------------------------------------
# Errors: one line naming the record and the problem
# --------------------------------------------------------------------------------------------------------------
def _rec(body: str, before: str = "") -> bytes:
    return f'[{before}{{{body}}}]'.encode()


OK = '"image_id": 1, "category_id": 2, "score": 0.5'
RULE_ERRORS = [
    (_rec('"image_id": 1, "category_id": 2, "score": 0.5, "bbox": "abc"'),
     "record 0: 'bbox' must be a list of 4 numbers, got a string"),
    (_rec('"image_id": 1, "category_id": 2.5, "score": 0.5', before=f"{{{OK}}}, " * 7),
     "record 7: 'category_id' must be an integer, got 2.5"),
    (_rec('"image_id": 1180591620717411303424, "category_id": 2, "score": 0.5'),
     "record 0: 'image_id' 1180591620717411303424 does not fit a 64-bit integer"),
    (_rec('"image_id": -9223372036854775809, "category_id": 2, "score": 0.5'), "does not fit a 64-bit integer"),
    (_rec('"image_id": 1, "category_id": 2, "score": NaN'), "record 0: 'score' is NaN"),
    (_rec('"image_id": 1, "category_id": 2, "score": Infinity'), "record 0: 'score' is infinite"),
    (_rec('"image_id": 1, "category_id": 2, "score": 1e400'), "record 0: 'score' 1e400 overflows to infinity"),
    (_rec('"image_id": 1, "category_id": 2, "score": -0.3'), "record 0: 'score' must be >= 0, got -0.3"),
    (_rec('"image_id": 1, "category_id": 2, "score": -1e-320'), "record 0: 'score' must be >= 0, got -1e-320"),
    (_rec('"image_id": 1, "category_id": 2, "score": true'), "record 0: 'score' must be a number, got true"),
    (_rec('"image_id": 1, "category_id": 2, "score": "0.5"'), "record 0: 'score' must be a number, got a string"),
    (_rec('"image_id": 1, "score": 0.5'), "record 0: missing 'category_id'"),
    (_rec('"category_id": 1, "score": 0.5'), "record 0: missing 'image_id'"),
    (_rec('"image_id": 1, "category_id": 1'), "record 0: missing 'score'"),
    (_rec(""), "record 0: missing 'image_id'"),
    (_rec('"image_id": 1.0, "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got 1.0"),
    (_rec('"image_id": 1e2, "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got 1e2"),
    (_rec('"image_id": true, "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got true"),
    (_rec('"image_id": null, "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got null"),
    (_rec('"image_id": NaN, "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got NaN"),
    (_rec('"image_id": [1], "category_id": 2, "score": 0.5'), "'image_id' must be an integer, got a list"),
    (_rec(OK + ', "bbox": [1, 2, -3, 4]', before=f"{{{OK}}}, " * 5),
     "record 5: bbox width -3.0 is negative (results use [x, y, width, height])"),
    (_rec(OK + ', "bbox": [1, 2, 3, -4e-3]'), "record 0: bbox height -0.004 is negative"),
    (_rec(OK + ', "bbox": [1, 2, -1e-320, 4]'), "record 0: bbox width -1e-320 is negative"),
    (_rec(OK + ', "bbox": [1, 2, 3]'), "'bbox' must be a list of 4 numbers, got a list of 3 numbers"),
    (_rec(OK + ', "bbox": [1, 2, 3, 4, 5]'), "'bbox' must be a list of 4 numbers, got a list of 5 numbers"),
    (_rec(OK + ', "bbox": null'), "'bbox' must be a list of 4 numbers, got null"),
    (_rec(OK + ', "bbox": {"x": 1}'), "'bbox' must be a list of 4 numbers, got an object"),
    (_rec(OK + ', "bbox": [1, "2", 3, 4]'), "'bbox' must be a list of 4 numbers, got a string at index 1"),
    (_rec(OK + ', "bbox": [1, 2, [3], 4]'), "got a list at index 2"),
    (_rec(OK + ', "bbox": [1, NaN, 3, 4]'), "record 0: 'bbox' value 1 is NaN"),
    (_rec(OK + ', "bbox": [1, 2, Infinity, 4]'), "record 0: 'bbox' value 2 is infinite"),
    (_rec(OK + ', "bbox": [1e999, 2, 3, 4]'), "record 0: 'bbox' value 0 1e999 overflows to infinity"),
    (_rec(OK + ', "segmentation": null'), "record 0: 'segmentation' must be an RLE object"),
    (_rec(OK + ', "segmentation": "abc"'), "got a string"),
    (_rec(OK + ', "segmentation": []'), "record 0: 'segmentation' is an empty list"),
    (_rec(OK + ', "segmentation": {"counts": "ab"}'), "record 0: 'segmentation' RLE object has no 'size'"),
    (_rec(OK + ', "segmentation": {"size": [1, 2]}'), "record 0: 'segmentation' RLE object has no 'counts'"),
    (_rec(OK + ', "segmentation": {}'), "RLE object has no 'size'"),
    (_rec(OK + ', "segmentation": {"size": [1], "counts": "ab"}'), "size must be [height, width]"),
    (_rec(OK + ', "segmentation": {"size": [-1, 2], "counts": "ab"}'), "size must be [height, width]"),
    (_rec(OK + ', "segmentation": {"size": [1.5, 2], "counts": "ab"}'), "size must be [height, width]"),
    (_rec(OK + ', "segmentation": {"size": [1, 2], "counts": 5}'), "counts must be a string or a list"),
    (_rec(OK + ', "segmentation": {"size": [1, 2], "counts": [1, -2]}'), "counts must be a string or a list"),
    (_rec(OK + ', "segmentation": {"size": [1, 2], "counts": [1, 2.5]}'), "counts must be a string or a list"),
    (_rec(OK + ', "segmentation": [1, 2, 3, 4, 5, 6]'), "record 0: 'segmentation' polygon 0 must be a list"),
    (_rec(OK + ', "segmentation": [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5]]'),
     "record 0: 'segmentation' polygon 1 is a list of 5 numbers; a polygon needs an even number"),
    (_rec(OK + ', "segmentation": [[1, 2, 3, 4]]'), "polygon 0 is a list of 4 numbers"),
    (_rec(OK + ', "segmentation": [[]]'), "polygon 0 is a list of 0 numbers"),
    (_rec(OK + ', "segmentation": [[1, 2, 3, "4", 5, 6]]'), "polygon 0 must hold only numbers, got a string"),
    (_rec(OK + ', "segmentation": [[1, 2, 3, NaN, 5, 6]]'), "polygon 0 holds NaN, not a finite number"),
    (_rec(OK + ', "segmentation": [[1, 2, 3, 4, 5, 1e400]]'), "polygon 0 value 1e400 overflows to infinity"),
    (b"[1, 2]", "record 0: a detection must be a JSON object, got 1"),
    (b'[{"image_id": 1, "category_id": 1, "score": 1}, "x"]',
     "record 1: a detection must be a JSON object, got a string"),
    (b"{}", "the top level must be a JSON list of detections, got an object"),
    (b'"abc"', "the top level must be a JSON list of detections, got a string"),
    (b"12", "the top level must be a JSON list of detections, got 12"),
]


@pytest.mark.parametrize("text,message", RULE_ERRORS)
def test_rule_errors_name_the_record_and_the_problem(text, message):
    with pytest.raises(MecError) as info:
        scan_results(text, source="det.json")
    text_of = str(info.value)
    assert "\n" not in text_of and text_of.startswith("det.json: ")
    assert message in text_of, text_of


def test_first_problem_wins_and_later_duplicate_replaces_a_bad_value():
    ok = _rec('"score": "bad", "image_id": [], "category_id": 2, "image_id": 1, "score": 0.5,'
              ' "bbox": null, "bbox": [], "segmentation": 1, "segmentation": {"counts": 5, "counts": "x",'
              ' "size": "y", "size": [1, 1]}')
    res = scan_results(ok)
    assert res.image_id.tolist() == [1] and res.score.tolist() == [0.5] and res.segm_kind.tolist() == [1]
    bad = _rec('"score": 0.5, "score": -1, "image_id": 1, "category_id": 2')
    with pytest.raises(MecError, match="'score' must be >= 0, got -1.0"):
        scan_results(bad)
    two = _rec('"image_id": "a", "category_id": 2, "score": -1')
    with pytest.raises(MecError, match="'image_id' must be an integer, got a string"):
        scan_results(two)


MALFORMED = [
    (b"", "the file is empty"),
    (b"  \n\t ", "the file is empty"),
    (b"[", "the file ends early"),
    (_rec(OK)[:-1], "expected ',' or ']'"),
    (_rec(OK)[:-2], "expected ',' or '}'"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5},]', "line 1 column 50 (byte 49): expected a value"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5,}]', "expected a key in double quotes"),
    (b'[{"image_id" 1}]', "expected ':'"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5, "x": "abc]', "unterminated string"),
    (b'[{"image_id": 1, "x": "a\\qb"}]', "invalid escape"),
    (b'[{"image_id": 1, "x": "a\\u12"}]', "invalid escape"),
    (b'[{"image_id": 1, "x": "a\nb"}]', "control character"),
    (b'[{"image_id": 1, "x": "\xff"}]', "invalid UTF-8"),
    (b'[{"image_id": 1, "x": "\xed\xa0\x80"}]', "invalid UTF-8"),
    (b"[nul]", "expected a value"),
    (b"[{\"image_id\": tru}]", "expected a value"),
    (b"[True]", "expected a value"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5}] x', "extra data"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5}][]', "extra data"),
    (b"\xef\xbb\xbf[]", "byte-order mark"),
    (b'{"a": 1', "the file ends early"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [1 2]}]', "expected ',' or ']'"),
    (b'[{"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [1, 2, 3, 4}]', "expected ',' or ']'"),
    (b'[{"image_id": 1, "category_id": 2, "score": .5}]', "expected a value"),
    (b'[{"image_id": 1, "category_id": 2, "score": -}]', "expected a value"),
    (b'[{"image_id": 1, "category_id": 2, "score": 1.}]', "expected ',' or '}'"),
    (b'[{"image_id": 1, "category_id": 2, "score": -NaN}]', "expected a value"),
]


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_json_is_one_clean_line(text, message):
    with pytest.raises(MecError) as info:
        scan_results(text)
    assert "\n" not in str(info.value) and message in str(info.value), str(info.value)


def test_malformed_json_wins_over_a_rule_error():
    text = b'[{"image_id": "x", "category_id": 2, "score": 0.5}, {"image_id": 1,'
    with pytest.raises(MecError, match=r"malformed JSON at line 1 column 68 \(byte 67\): the file ends early"):
        scan_results(text)
    text = b'[{"image_id": 1, "category_id": 2, "score": 5e-324, "bbox": [0, 0, -1e-310, 1]}, nul]'
    with pytest.raises(MecError, match="malformed JSON"):
        scan_results(text)


def test_line_and_column():
    text = b'[\n  {"image_id": 1,\n   "category_id": 2 "score": 1}]'
    with pytest.raises(MecError, match=r"line 3 column 21 \(byte 40\): expected ',' or '\}'"):
        scan_results(text)


def test_every_truncation_is_a_clean_error():
    recs = [{"image_id": 1, "category_id": 2, "score": 0.25, "bbox": [1.5, 2, 3e1, 4],
             "segmentation": {"size": [3, 4], "counts": "a\\b\"c"}, "extra": [{"k": [None, True, "\u00e9"]}]},
            {"image_id": 2, "category_id": 3, "score": 1, "segmentation": [[1, 2, 3, 4, 5, 6]], "x": -1.5e-3}]
    text = json.dumps(recs, ensure_ascii=False).encode("utf-8")
    scan_results(text)
    for cut in range(len(text)):
        with pytest.raises(MecError):
            scan_results(text[:cut])


@settings(max_examples=300, **SETTINGS)
@given(st.binary(max_size=60), st.integers(0, 200))
def test_random_bytes_never_crash(noise, at):
    text = json.dumps([{"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [1, 2, 3, 4]}]).encode()
    at = min(at, len(text))
    for doc in (noise, text[:at] + noise + text[at:], text[:at] + noise):
        try:
            scan_results(doc)
        except MecError as exc:
            assert "\n" not in str(exc)


def _rules_reference(text: bytes):
    """json.loads plus the results rules in plain Python: "syntax", "rule", or the list of records."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def integer(v, low=-2 ** 63):
        return isinstance(v, int) and not isinstance(v, bool) and low <= v < 2 ** 63

    def finite(v):
        try:
            return math.isfinite(float(v))
        except OverflowError:
            return False

    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return "syntax"
    if not isinstance(obj, list) or not all(isinstance(d, dict) for d in obj):
        return "rule"
    for d in obj:
        if not (integer(d.get("image_id")) and integer(d.get("category_id")) and number(d.get("score"))
                and finite(d["score"]) and float(d["score"]) >= 0):
            return "rule"
        box = d.get("bbox", [])
        if box != [] and not (isinstance(box, list) and len(box) == 4 and all(number(v) and finite(v) for v in box)
                              and float(box[2]) >= 0 and float(box[3]) >= 0):
            return "rule"
        seg = d.get("segmentation", [[0, 0, 0, 0, 0, 0]])
        if isinstance(seg, dict):
            size, counts = seg.get("size"), seg.get("counts")
            if not (isinstance(size, list) and len(size) == 2 and all(integer(v, 0) for v in size)
                    and (isinstance(counts, str)
                         or isinstance(counts, list) and all(integer(v, 0) for v in counts))):
                return "rule"
        elif not (isinstance(seg, list) and seg and all(
                isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(number(v) and finite(v) for v in p)
                for p in seg)):
            return "rule"
    return obj


MUTATION_BASE = json.dumps([
    {"image_id": 1, "category_id": 2, "score": 0.25, "bbox": [1.5, 2, 30.0, 4],
     "segmentation": {"size": [3, 4], "counts": "a\\b\"c"}},
    {"image_id": 22, "category_id": 3, "score": 1, "segmentation": [[1, 2, 3, 4, 5, 6]],
     "x": [-1.5e-3, None, True, {"y": "z"}]},
    {"score": 0.10000000149011612, "bbox": [], "category_id": 7, "image_id": -5,
     "segmentation": {"counts": [1, 2, 3], "size": [2, 3]}}], indent=1).encode()
MUTATION_BYTES = b' \t\n[]{}",:0123456789.-+eEtrufalsnNIiy\\/u\x00\xc3\xa9'


@settings(max_examples=400, **SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(["delete", "insert", "replace"]), st.integers(0, len(MUTATION_BASE)),
                          st.sampled_from(list(MUTATION_BYTES))), min_size=1, max_size=4))
def test_mutated_documents_agree_with_json_loads_and_the_rules(edits):
    text = bytearray(MUTATION_BASE)
    for op, at, byte in edits:
        at = min(at, len(text) - 1)
        if op == "delete":
            del text[at]
        elif op == "insert":
            text[at:at] = bytes([byte])
        else:
            text[at] = byte
    text = bytes(text)
    expected = _rules_reference(text)
    try:
        res = scan_results(text)
    except MecError as exc:
        got = "syntax" if ("malformed JSON" in str(exc) or "empty" in str(exc)) else "rule"
        assert got == expected, (text, str(exc))
        return
    assert not isinstance(expected, str), (text, expected)
    assert len(res) == len(expected)
    for i, d in enumerate(expected):
        assert (res.image_id[i], res.category_id[i]) == (d["image_id"], d["category_id"])
        assert _bits(res.score[i]) == _bits(float(d["score"]))
        assert res.segmentation(text, i) == d.get("segmentation")
        if d.get("bbox", []):
            assert [_bits(v) for v in res.bbox[i].tolist()] == [_bits(float(v)) for v in d["bbox"]]


def test_deep_nesting_in_an_unknown_key_is_skipped():
    deep = b"[" * 100_000 + b"]" * 100_000
    text = b'[{"image_id": 1, "category_id": 2, "score": 0.5, "deep": ' + deep + b"}]"
    assert scan_results(text).image_id.tolist() == [1]
    objects = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    text = b'[{"image_id": 1, "deep": ' + objects + b', "category_id": 2, "score": 0.5}]'
    assert scan_results(text).image_id.tolist() == [1]
    with pytest.raises(MecError, match="malformed JSON"):
        scan_results(b'[{"image_id": 1, "deep": ' + b"[" * 100_000 + b"}]")
    with pytest.raises(MecError, match="'bbox' must be a list of 4 numbers"):
        scan_results(_rec(OK + ', "bbox": ' + "[" * 100_000 + "]" * 100_000))


def _same_arrays(a, b):
    for field in ("image_id", "category_id", "score", "bbox", "has_bbox", "segm_kind", "segm_span", "rle_size",
                  "counts_span", "counts_escaped"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), field  # bit for bit (NaN boxes included)


@settings(max_examples=60, **SETTINGS)
@given(st.lists(records(), min_size=1, max_size=12), st.integers(0, 2 ** 32), st.sampled_from([None, 0, 2]),
       st.integers(40, 400))
def test_files_read_in_pieces_equal_one_scan(tmp_path_factory, recs, seed, indent, piece):
    """A large file is scanned in pieces side by side; any piece size gives the whole scan's arrays, spans into
    the file, and the same error when there is one (unknown keys may hold text that looks like a record start)."""
    text = _dump(recs, random.Random(seed), indent).encode("utf-8")
    path = tmp_path_factory.mktemp("pieces") / "results.json"
    path.write_bytes(text)
    whole = scan_results(text)
    arrays, buf = read_results_file(path, piece_bytes=piece)
    _same_arrays(arrays, whole)
    # the file's bytes when records hold segmentations (or when the pieces gave way to one whole scan)
    assert buf.tobytes() in ((text,) if whole.segm_kind.any() or len(text) < 2 * piece else (b"", text))
    for i in np.flatnonzero(whole.segm_kind):
        assert arrays.segmentation(buf, i) == whole.segmentation(text, i)


def test_pieces_with_a_misleading_string_and_bad_records(tmp_path):
    """A string holding '}, {"' fools the guess of a piece start: the result is still exact; a bad record in any
    piece gives the one message of the whole scan."""
    recs = [{"image_id": i, "category_id": 1, "score": 0.5, "bbox": [1, 2, 3, 4],
             "note": 'x}, {"image_id": 1' * (i % 3)} for i in range(400)]
    text = json.dumps(recs).encode()
    path = tmp_path / "r.json"
    path.write_bytes(text)
    for piece in (97, 500, 4096):
        _same_arrays(read_results_file(path, piece_bytes=piece)[0], scan_results(text))
    for bad in (b'"score": -1', b'"bbox": [1, 2]', b'"image_id": 1.5'):
        broken = text.replace(b'"score": 0.5', bad, 1) if bad.startswith(b'"score"') else \
            text[:len(text) * 2 // 3] + text[len(text) * 2 // 3:].replace(b'"bbox": [1, 2, 3, 4]', bad, 1)
        if bad.startswith(b'"image_id"'):
            broken = text[:len(text) // 2] + text[len(text) // 2:].replace(b'"image_id": 300', bad, 1)
        path.write_bytes(broken)
        with pytest.raises(MecError) as whole:
            scan_results(broken, source=str(path))
        with pytest.raises(MecError) as pieces:
            read_results_file(path, piece_bytes=600)
        assert str(pieces.value) == str(whole.value)
    path.write_bytes(text[:-40])  # truncated
    with pytest.raises(MecError, match="expected"):
        read_results_file(path, piece_bytes=600)
