"""Fast, exact, validating reader of detection results files (the LVIS/COCO "results" JSON list).

One numba pass over the raw bytes fills flat numpy arrays; no per-record Python object is made. The reader
accepts exactly the JSON that Python's ``json`` module accepts (RFC 8259 plus the ``NaN``/``Infinity``
literals, duplicate keys with the last one winning) and then applies the results rules that pycocotools and
lvis-api rely on (see ``scan_results``).

Numbers are bit-identical to ``float(json.loads(token))``:

1. Clinger's fast path when the decimal significand is at most 2**53 and the power of ten at most 22 in
   magnitude (one exactly rounded multiplication or division of two exact doubles).
2. Otherwise the Eisel-Lemire algorithm (Lemire, "Number Parsing at a Gigabyte per Second", as fast_float
   implements it) with a table of 128-bit truncated powers of five built at import time with Python integers.
   With more than 19 significant digits the first 19 are used as ``w`` and the result is accepted only when
   ``w`` and ``w + 1`` round to the same double.
3. Every case the fast code does not decide (subnormal or overflowing results, ambiguous products, truncated
   significands whose bounds disagree) records the token's byte span, and Python's own ``float()`` parses it
   after the numba pass.

**Decision** (integer tokens): a JSON integer becomes a Python ``int`` and then a float, so ``-0`` reads as
``0.0`` (``float("-0")`` would give ``-0.0``); ``-0.0`` stays ``-0.0``.

Use: ``arrays, buf = read_results_file(path)`` (or ``scan_results(raw_bytes)``). Segmentations stay in the
buffer as byte spans; ``arrays.rle_counts(buf, i)`` and ``arrays.segmentation(buf, i)`` turn one record's into
what ``json.loads`` gives, so keep ``buf`` while you need them.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from mec_cli.errors import MecError
from mec_cli.evaluation.compiled import intrinsic, njit
from mec_cli.io import check_input

__all__ = ["ResultsArrays", "scan_results", "read_results_file"]

BufferLike = Union[bytes, bytearray, memoryview, np.ndarray]


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------
def _power_of_five_table() -> np.ndarray:
    """128-bit truncated powers of five for q in [-342, 308], as fast_float's table_generation.py makes them.

    Returns a (2 * 651,) uint64 array: entry ``2 * (q + 342)`` is the high word, ``2 * (q + 342) + 1`` the low
    word of 5**q normalised so that its top bit is bit 127 (reciprocals rounded up for q < 0).
    """
    words = []
    for q in range(-342, 0):
        power5 = 5 ** -q
        z = power5.bit_length()  # smallest z with 2**z >= 5**-q (5**-q is never a power of two)
        if q >= -27:
            c = 2 ** (z + 127) // power5 + 1
        else:
            c = 2 ** (2 * z + 128) // power5 + 1
            c >>= max(0, c.bit_length() - 128)  # halved (truncating) until below 2**128
        words += [c >> 64, c & 0xFFFFFFFFFFFFFFFF]
    for q in range(0, 309):
        power5 = 5 ** q
        bits = power5.bit_length()  # doubled until at least 2**127, or halved (truncating) until below 2**128
        power5 = power5 << (128 - bits) if bits < 128 else power5 >> (bits - 128)
        words += [power5 >> 64, power5 & 0xFFFFFFFFFFFFFFFF]
    return np.array(words, dtype=np.uint64)


_P5 = _power_of_five_table()
_P10 = np.array([10.0 ** k for k in range(23)], dtype=np.float64)  # exact doubles 1e0 .. 1e22

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U10 = np.uint64(10)
_U32 = np.uint64(32)
_U63 = np.uint64(63)
_M32 = np.uint64(0xFFFFFFFF)
_MALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_PREC_MASK = np.uint64(0x1FF)  # 0xFFFFFFFFFFFFFFFF >> (52 + 3)
_TWO53 = np.uint64(1 << 53)
_INT64_MAX = np.uint64((1 << 63) - 1)
_INT64_NEG_LIMIT = np.uint64(1 << 63)
_INT64_MIN = np.int64(-(1 << 63))

# Keys that the reader knows, as byte rows padded with zeros (row k is key id k + 1).
_RECORD_KEYS = [b"image_id", b"category_id", b"score", b"bbox", b"segmentation"]
_RLE_KEYS = [b"size", b"counts"]


def _key_table(keys) -> Tuple[np.ndarray, np.ndarray]:
    """The keys as a (K, 16) uint8 table padded with zeros, and their (K,) lengths."""
    table = np.zeros((len(keys), 16), dtype=np.uint8)
    for k, key in enumerate(keys):
        table[k, :len(key)] = np.frombuffer(key, dtype=np.uint8)
    return table, np.array([len(k) for k in keys], dtype=np.int64)


_REC_KEYS, _REC_KEY_LEN = _key_table(_RECORD_KEYS)
_SEG_KEYS, _SEG_KEY_LEN = _key_table(_RLE_KEYS)

# Field ids (record keys) and fallback kinds.
F_IMAGE, F_CATEGORY, F_SCORE, F_BBOX, F_SEGM = 1, 2, 3, 4, 5
_FIELD_NAMES = {F_IMAGE: "image_id", F_CATEGORY: "category_id", F_SCORE: "score", F_BBOX: "bbox",
                F_SEGM: "segmentation"}

# err[0]: what stopped the scan.
K_NONE, K_SYNTAX, K_SEMANTIC, K_CAPACITY, K_TOP, K_EMPTY = 0, 1, 2, 3, 4, 5
# Syntax: what was expected (err[4]).
X_VALUE, X_KEY, X_COLON, X_COMMA_BRACKET, X_COMMA_BRACE, X_END = 1, 2, 3, 4, 5, 7
X_STRING_END, X_ESCAPE, X_CONTROL, X_UTF8 = 8, 9, 10, 11
# Semantic problems (err[4]); err[5] is an index where one applies.
S_MISSING, S_NOT_INT, S_INT_RANGE, S_NOT_NUMBER, S_NAN, S_INF, S_NEGATIVE = 1, 2, 3, 4, 5, 6, 7
S_BBOX_SHAPE, S_BBOX_ITEM, S_BBOX_NEG, S_NOT_OBJECT = 8, 9, 10, 11
S_SEGM_TYPE, S_SEGM_EMPTY, S_RLE_NO_SIZE, S_RLE_NO_COUNTS, S_RLE_SIZE, S_RLE_COUNTS = 12, 13, 14, 15, 16, 17
S_POLY_TYPE, S_POLY_ITEM, S_POLY_LEN, S_POLY_NONFINITE = 18, 19, 20, 21
# Number scanner status.
ST_OK, ST_INVALID, ST_NAN, ST_INF = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------------------------
# numba primitives: whitespace, strings, numbers, generic values
# --------------------------------------------------------------------------------------------------------------
@intrinsic
def _borrowed(typingctx, arr):
    """The same array without its reference-counted owner, for the lifetime of the calling function.

    numba increments and decrements an array's (atomic) reference count around every call that takes it; the
    byte-level helpers are called tens of times per record, and those atomics cost more than the parsing. A view
    with a null owner skips them. Only for arrays that the caller keeps alive for the whole call.
    """
    from numba import types  # noqa: PLC0415  (typing runs in numba's compiler only: numba is imported then)
    from numba.core import cgutils  # noqa: PLC0415  (idem)

    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        out = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, name, getattr(src, name))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen


@njit(cache=True, nogil=True)
def _ws(buf, i, n):
    """Index of the first byte at or after ``i`` that is not JSON whitespace (space, tab, LF, CR)."""
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@njit(cache=True, nogil=True, inline="always")
def _ws_hot(buf, i, n):
    """``_ws`` with the common case (no whitespace at ``i``) decided in place, for the record loop."""
    if i < n and buf[i] > 32:
        return i
    return _ws(buf, i, n)


@njit(cache=True, nogil=True)
def _syntax(err, pos, what):
    err[0] = K_SYNTAX
    err[3] = pos
    err[4] = what
    return -1


@njit(cache=True, nogil=True)
def _is_hex(c):
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


@njit(cache=True, nogil=True)
def _utf8_len(buf, j, n):
    """Length of the valid UTF-8 sequence starting at ``buf[j] >= 0x80``, or 0 if it is invalid (as CPython)."""
    c = buf[j]
    if 0xC2 <= c <= 0xDF:
        if j + 1 < n and 0x80 <= buf[j + 1] <= 0xBF:
            return 2
        return 0
    if 0xE0 <= c <= 0xEF:
        if j + 2 >= n:
            return 0
        c1 = buf[j + 1]
        lo = 0xA0 if c == 0xE0 else 0x80
        hi = 0x9F if c == 0xED else 0xBF  # no UTF-16 surrogates
        if lo <= c1 <= hi and 0x80 <= buf[j + 2] <= 0xBF:
            return 3
        return 0
    if 0xF0 <= c <= 0xF4:
        if j + 3 >= n:
            return 0
        c1 = buf[j + 1]
        lo = 0x90 if c == 0xF0 else 0x80
        hi = 0x8F if c == 0xF4 else 0xBF  # nothing above U+10FFFF
        if lo <= c1 <= hi and 0x80 <= buf[j + 2] <= 0xBF and 0x80 <= buf[j + 3] <= 0xBF:
            return 4
        return 0
    return 0


@njit(cache=True, nogil=True)
def _scan_string(buf, i, n, err):
    """Validate the JSON string whose opening quote is ``buf[i]``.

    Returns ``(end, escaped)``: the index after the closing quote and whether the content holds a backslash
    escape; ``end`` is -1 on a syntax error (``err`` filled).
    """
    j = i + 1
    escaped = False
    while j < n:
        c = buf[j]
        if c == 34:
            return j + 1, escaped
        if c == 92:
            escaped = True
            if j + 1 >= n:
                break
            e = buf[j + 1]
            if e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110 or e == 114 or e == 116:
                j += 2
                continue
            if e == 117:
                if j + 5 < n and _is_hex(buf[j + 2]) and _is_hex(buf[j + 3]) and _is_hex(buf[j + 4]) \
                        and _is_hex(buf[j + 5]):
                    j += 6
                    continue
                return _syntax(err, j, X_ESCAPE), escaped
            return _syntax(err, j, X_ESCAPE), escaped
        if c < 32:
            return _syntax(err, j, X_CONTROL), escaped
        if c >= 128:
            k = _utf8_len(buf, j, n)
            if k == 0:
                return _syntax(err, j, X_UTF8), escaped
            j += k
            continue
        j += 1
    return _syntax(err, i, X_STRING_END), escaped


@njit(cache=True, nogil=True)
def _match_literal(buf, i, n, lit):
    """True if the bytes at ``i`` spell ``lit`` (a uint8 array)."""
    m = lit.shape[0]
    if i + m > n:
        return False
    for k in range(m):
        if buf[i + k] != lit[k]:
            return False
    return True


_LIT_TRUE = np.frombuffer(b"true", dtype=np.uint8).copy()
_LIT_FALSE = np.frombuffer(b"false", dtype=np.uint8).copy()
_LIT_NULL = np.frombuffer(b"null", dtype=np.uint8).copy()
_LIT_NAN = np.frombuffer(b"NaN", dtype=np.uint8).copy()
_LIT_INF = np.frombuffer(b"Infinity", dtype=np.uint8).copy()


@njit(cache=True, nogil=True, inline="always")
def _scan_number(buf, i, n):
    """Tokenise the JSON number (or NaN/Infinity/-Infinity literal) at ``buf[i]``.

    Returns ``(end, neg, mant, q, nd, dropped_nonzero, is_int, status)``:
    the value is ``(-1)**neg * mant * 10**q`` when ``nd <= 19``; ``nd`` counts the significant digits and
    ``mant`` (uint64) holds the first ``min(nd, 19)`` of them; ``dropped_nonzero`` says whether a dropped
    digit was not zero; ``is_int`` is True for a token with neither fraction nor exponent; ``status`` is
    ST_OK, ST_NAN, ST_INF (``neg`` gives the sign) or ST_INVALID (not a number at all).
    ``end`` is the end of the longest valid number at ``i``, as Python's ``json`` takes it.
    """
    j = i
    neg = False
    mant = _U0
    nd = 0
    exp10 = 0
    dropped_nonzero = False
    is_int = True
    c = buf[j] if j < n else 0
    if c == 45:  # '-'
        neg = True
        j += 1
        c = buf[j] if j < n else 0
    if c == 48:  # a leading '0' stands alone
        j += 1
    elif 49 <= c <= 57:
        # 1. integer digits: the first 19 go into the significand, later ones only scale it
        while j < n:
            d = buf[j] - 48
            if d < 0 or d > 9:
                break
            if nd < 19:
                mant = mant * _U10 + np.uint64(d)
            else:
                exp10 += 1
                if d != 0:
                    dropped_nonzero = True
            nd += 1
            j += 1
    else:
        if c == 78 and not neg and _match_literal(buf, j, n, _LIT_NAN):
            return j + 3, neg, mant, 0, 0, False, False, ST_NAN
        if c == 73 and _match_literal(buf, j, n, _LIT_INF):
            return j + 8, neg, mant, 0, 0, False, False, ST_INF
        return i, neg, mant, 0, 0, False, False, ST_INVALID
    # 2. fraction, only when a digit follows the point (else the number ends before the '.')
    if j + 1 < n and buf[j] == 46 and 48 <= buf[j + 1] <= 57:
        is_int = False
        j += 1
        while j < n:
            d = buf[j] - 48
            if d < 0 or d > 9:
                break
            if nd == 0 and d == 0:
                exp10 -= 1  # leading zero of 0.000ddd
            elif nd < 19:
                mant = mant * _U10 + np.uint64(d)
                exp10 -= 1
                nd += 1
            else:
                if d != 0:
                    dropped_nonzero = True
                nd += 1
            j += 1
    # 3. exponent, only when at least one digit follows 'e' and its optional sign
    if j < n and (buf[j] == 101 or buf[j] == 69):
        k = j + 1
        eneg = False
        if k < n and (buf[k] == 43 or buf[k] == 45):
            eneg = buf[k] == 45
            k += 1
        if k < n and 48 <= buf[k] <= 57:
            is_int = False
            e = 0
            while k < n:
                d = buf[k] - 48
                if d < 0 or d > 9:
                    break
                if e < 1000000000000000:  # saturate: any larger exponent is inf or 0 anyway
                    e = e * 10 + d
                k += 1
            exp10 += -e if eneg else e
            j = k
    return j, neg, mant, exp10, nd, dropped_nonzero, is_int, ST_OK


@njit(cache=True, nogil=True)
def _scan_number_call(buf, i, n):
    """``_scan_number`` as an ordinary call, for the places that are not worth an inlined copy."""
    return _scan_number(buf, i, n)


@njit(cache=True, nogil=True)
def _skip_scalar(buf, i, n, err):
    """End of the string, number or literal at ``i``; -1 (``err`` filled) if there is no valid value there."""
    c = buf[i] if i < n else 0
    if c == 34:
        end, esc = _scan_string(buf, i, n, err)
        return end
    if c == 116:
        if _match_literal(buf, i, n, _LIT_TRUE):
            return i + 4
    elif c == 102:
        if _match_literal(buf, i, n, _LIT_FALSE):
            return i + 5
    elif c == 110:
        if _match_literal(buf, i, n, _LIT_NULL):
            return i + 4
    else:
        end, neg, mant, q, nd, dnz, is_int, st = _scan_number_call(buf, i, n)
        if st != ST_INVALID:
            return end
    return _syntax(err, i, X_VALUE)


@njit(cache=True, nogil=True)
def _skip_value(buf, i, n, err):
    """Validate and skip the JSON value starting at ``i`` (whitespace before it allowed).

    Iterative, with an explicit stack of open containers, so any nesting depth is fine. Returns the index after
    the value, or -1 on a syntax error (``err`` filled).
    """
    i = _ws(buf, i, n)
    c = buf[i] if i < n else 0
    if c != 91 and c != 123:
        return _skip_scalar(buf, i, n, err)
    stack = np.empty(64, dtype=np.uint8)  # 1 = array, 2 = object
    depth = 0
    state = 0  # 0 expect a value, 1 expect a key, 2 after a value
    while True:
        if state == 0:
            i = _ws(buf, i, n)
            c = buf[i] if i < n else 0
            if c == 91 or c == 123:
                if depth == stack.shape[0]:
                    bigger = np.empty(2 * depth, dtype=np.uint8)
                    bigger[:depth] = stack
                    stack = bigger
                stack[depth] = 1 if c == 91 else 2
                depth += 1
                i = _ws(buf, i + 1, n)
                c2 = buf[i] if i < n else 0
                if (c == 91 and c2 == 93) or (c == 123 and c2 == 125):
                    depth -= 1
                    i += 1
                    state = 2
                else:
                    state = 0 if c == 91 else 1
            else:
                i = _skip_scalar(buf, i, n, err)
                if i < 0:
                    return -1
                state = 2
        elif state == 1:
            if i >= n or buf[i] != 34:
                return _syntax(err, i, X_KEY)
            i, kesc = _scan_string(buf, i, n, err)
            if i < 0:
                return -1
            i = _ws(buf, i, n)
            if i >= n or buf[i] != 58:
                return _syntax(err, i, X_COLON)
            i += 1
            state = 0
        else:
            if depth == 0:
                return i
            i = _ws(buf, i, n)
            c = buf[i] if i < n else 0
            top = stack[depth - 1]
            if c == 44:
                i = _ws(buf, i + 1, n)
                state = 1 if top == 2 else 0
            elif (c == 93 and top == 1) or (c == 125 and top == 2):
                depth -= 1
                i += 1
            else:
                return _syntax(err, i, X_COMMA_BRACKET if top == 1 else X_COMMA_BRACE)


@njit(cache=True, nogil=True)
def _validate_document(buf, err):
    """Check that the whole buffer is one JSON value with only whitespace around it; 0 if so, -1 otherwise."""
    buf = _borrowed(buf)
    err = _borrowed(err)
    n = buf.shape[0]
    i = _ws(buf, 0, n)
    if i >= n:
        err[0] = K_EMPTY
        return -1
    i = _skip_value(buf, i, n, err)
    if i < 0:
        return -1
    i = _ws(buf, i, n)
    if i != n:
        return _syntax(err, i, X_END)
    return 0


# --------------------------------------------------------------------------------------------------------------
# numba float conversion: Clinger's fast path and Eisel-Lemire
# --------------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _mul128(a, b):
    """Full 64x64 -> 128-bit product of two uint64 as ``(high, low)``, with 32-bit halves."""
    a_lo = a & _M32
    a_hi = a >> _U32
    b_lo = b & _M32
    b_hi = b >> _U32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> _U32) + (p1 & _M32) + (p2 & _M32)
    low = (p0 & _M32) | (mid << _U32)
    high = p3 + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32)
    return high, low


@njit(cache=True, nogil=True)
def _clz(x):
    """Leading zero bits of a non-zero uint64."""
    k = 0
    if x & np.uint64(0xFFFFFFFF00000000) == _U0:
        k += 32
        x = x << np.uint64(32)
    if x & np.uint64(0xFFFF000000000000) == _U0:
        k += 16
        x = x << np.uint64(16)
    if x & np.uint64(0xFF00000000000000) == _U0:
        k += 8
        x = x << np.uint64(8)
    if x & np.uint64(0xF000000000000000) == _U0:
        k += 4
        x = x << np.uint64(4)
    if x & np.uint64(0xC000000000000000) == _U0:
        k += 2
        x = x << np.uint64(2)
    if x & np.uint64(0x8000000000000000) == _U0:
        k += 1
    return k


@njit(cache=True, nogil=True)
def _eisel_lemire(q, w):
    """Correctly rounded positive double ``w * 10**q`` for uint64 ``w != 0``; returns ``(value, ok)``.

    ``ok`` is False (value meaningless) where this code declines: q outside [-342, 308], a subnormal or
    infinite result, or a product whose truncation leaves the rounding undecided.
    """
    if q < -342 or q > 308:
        return 0.0, False
    # 1. normalise w so its top bit is set, and multiply by the 128-bit truncated 5**q
    lz = _clz(w)
    w = w << np.uint64(lz)
    idx = 2 * (q + 342)
    high, low = _mul128(w, _P5[idx])
    if high & _PREC_MASK == _PREC_MASK:
        # 2. the low 9 bits of the high word are all ones: refine with the next 64 bits of 5**q
        high2, low2 = _mul128(w, _P5[idx + 1])
        low = low + high2
        if high2 > low:
            high = high + _U1
        if low == _MALL and (q < -27 or q > 55):
            return 0.0, False  # still ambiguous: let Python decide
    # 3. keep the top 54 bits (53 + one rounding bit) and compute the biased binary exponent
    upperbit = np.int64(high >> _U63)
    shift = np.uint64(upperbit + 9)
    mantissa = high >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upperbit - lz + 1023
    if power2 <= 0:
        return 0.0, False  # subnormal (or zero): the fallback parses it
    # 4. round half to even: an exact tie can only happen when 5**q fits in 64 bits (-4 <= q <= 23)
    if low <= _U1 and q >= -4 and q <= 23 and (mantissa & _U3) == _U1:
        if (mantissa << shift) == high:
            mantissa = mantissa & ~_U1
    mantissa = mantissa + (mantissa & _U1)
    mantissa = mantissa >> _U1
    if mantissa >= _TWO53:
        mantissa = _TWO53 >> _U1
        power2 += 1
    if power2 >= 0x7FF:
        return 0.0, False  # overflow to infinity: the fallback decides (and the caller rejects it)
    # 5. mantissa holds the implicit bit, so the value is mantissa * 2**(power2 - 1023 - 52), exactly
    return math.ldexp(float(mantissa), power2 - 1075), True


@njit(cache=True, nogil=True, inline="always")
def _to_float(neg, mant, q, nd, dropped_nonzero, is_int):
    """The double of a scanned number token, exactly as Python's ``float(json.loads(token))``.

    Returns ``(value, ok)``; ``ok`` False means "parse the token with Python".
    """
    if mant == _U0:
        return (-0.0 if (neg and not is_int) else 0.0), True
    if nd <= 19 or not dropped_nonzero:
        if mant <= _TWO53 and -22 <= q <= 22:
            # Clinger: both operands are exact doubles, so one IEEE operation rounds correctly
            v = float(mant)
            v = v * _P10[q] if q >= 0 else v / _P10[-q]
        else:
            v, ok = _eisel_lemire(q, mant)
            if not ok:
                return 0.0, False
    else:
        # more than 19 digits: the true value lies in [w, w + 1) * 10**q, decided if both bounds agree
        v, ok = _eisel_lemire(q, mant)
        v2, ok2 = _eisel_lemire(q, mant + _U1)
        if not (ok and ok2 and v == v2):
            return 0.0, False
    return (-v if neg else v), True


@njit(cache=True, nogil=True)
def _parse_tokens(buf, starts, ends, values, fast):
    """Parse each number token ``buf[starts[k]:ends[k]]`` as the scanner does (used by the tests).

    ``values[k]`` receives the double and ``fast[k]`` whether the numba code decided it; a token that is not
    exactly one JSON number gets ``fast[k] = False`` too.
    """
    buf = _borrowed(buf)
    for k in range(starts.shape[0]):
        end, neg, mant, q, nd, dnz, is_int, st = _scan_number(buf, starts[k], ends[k])
        ok = st == ST_OK and end == ends[k]
        if ok:
            v, ok = _to_float(neg, mant, q, nd, dnz, is_int)
            values[k] = v
        fast[k] = ok


@njit(cache=True, nogil=True)
def _int_value(neg, mant, nd):
    """``(value, fits)`` of an integer token within int64."""
    if nd > 19:
        return np.int64(0), False
    if neg:
        if mant > _INT64_NEG_LIMIT:
            return np.int64(0), False
        if mant == _INT64_NEG_LIMIT:
            return _INT64_MIN, True
        return -np.int64(mant), True
    if mant > _INT64_MAX:
        return np.int64(0), False
    return np.int64(mant), True


# --------------------------------------------------------------------------------------------------------------
# numba record scanner
# --------------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _key_id_escaped(buf, s, e, table, lens):
    """Id (row + 1) in ``table`` of the key whose content ``buf[s:e]`` holds JSON escapes, 0 if none matches.

    Rare: the escapes are decoded into a short buffer; a non-ASCII character means "unknown key".
    """
    dec = np.zeros(16, dtype=np.uint8)
    m = 0
    j = s
    while j < e:
        if m >= 16:
            return 0
        c = buf[j]
        if c == 92:
            x = buf[j + 1]
            if x == 117:
                cp = 0
                for t in range(4):
                    h = buf[j + 2 + t]
                    if h <= 57:
                        d = h - 48
                    elif h <= 70:
                        d = h - 55
                    else:
                        d = h - 87
                    cp = cp * 16 + d
                if cp >= 128:
                    return 0
                dec[m] = cp
                j += 6
            else:
                if x == 98:
                    dec[m] = 8
                elif x == 102:
                    dec[m] = 12
                elif x == 110:
                    dec[m] = 10
                elif x == 114:
                    dec[m] = 13
                elif x == 116:
                    dec[m] = 9
                else:
                    dec[m] = x  # \" \\ \/
                j += 2
        elif c >= 128:
            return 0
        else:
            dec[m] = c
            j += 1
        m += 1
    for k in range(table.shape[0]):
        if lens[k] == m:
            same = True
            for t in range(m):
                if dec[t] != table[k, t]:
                    same = False
                    break
            if same:
                return k + 1
    return 0


@njit(cache=True, nogil=True, inline="always")
def _read_key(buf, i, n, err, table, lens):
    """Validate the key string at ``buf[i]`` (its opening quote) and look it up in ``table``.

    Returns ``(end, id)``: the index after the closing quote (-1 on a syntax error) and the row + 1 of the key
    in ``table`` (0 for an unknown key). A plain known key is matched in place, without a separate scan.
    """
    # 1. fast path: the bytes after the quote spell a known key and its closing quote
    for k in range(table.shape[0]):
        m = lens[k]
        if i + m + 1 < n and buf[i + m + 1] == 34:
            same = True
            for t in range(m):
                if buf[i + 1 + t] != table[k, t]:
                    same = False
                    break
            if same:
                return i + m + 2, k + 1
    # 2. any other key: validate it, then decode its escapes if it has any
    end, escaped = _scan_string(buf, i, n, err)
    if end < 0 or not escaped:
        return end, 0
    return end, _key_id_escaped(buf, i + 1, end - 1, table, lens)


@njit(cache=True, nogil=True)
def _push_fallback(fb, nfb, rec, field, slot, start, end):
    """Append one fallback token ``(record, field, slot, start, end)``; returns the (maybe regrown) table."""
    if nfb == fb.shape[0]:
        bigger = np.empty((2 * nfb, 5), dtype=np.int64)
        bigger[:nfb] = fb
        fb = bigger
    fb[nfb, 0] = rec
    fb[nfb, 1] = field
    fb[nfb, 2] = slot
    fb[nfb, 3] = start
    fb[nfb, 4] = end
    return fb


@njit(cache=True, nogil=True)
def _nonneg_int(buf, j, n):
    """The non-negative JSON integer within int64 at ``j``: ``(end, value, ok)``."""
    end, neg, mant, q, nd, dnz, is_int, st = _scan_number_call(buf, j, n)
    if st != ST_OK or not is_int or (neg and mant != _U0):
        return end, np.int64(-1), False
    value, fits = _int_value(neg, mant, nd)
    return end, value, fits


@njit(cache=True, nogil=True)
def _parse_rle(buf, i, n, err):
    """Parse the RLE object at ``buf[i]`` (``{``): ``{"size": [h, w], "counts": "..." | [ints]}``.

    Returns ``(end, problem, pos, kind, h, w, counts_start, counts_end, escaped)``. ``end`` is -1 on a syntax
    error (``err`` filled); on a broken rule ``problem`` is set and ``end`` is meaningless (the caller re-skips
    the value). The last occurrence of a sub-key counts, as in ``json.loads``.
    """
    size_problem = S_RLE_NO_SIZE
    counts_problem = S_RLE_NO_COUNTS
    size_pos = i
    counts_pos = i
    kind = 0
    h = np.int64(-1)
    w = np.int64(-1)
    cs0 = -1
    cs1 = -1
    cesc = False
    j = _ws(buf, i + 1, n)
    if j < n and buf[j] == 125:
        j += 1
    else:
        while True:
            if j >= n or buf[j] != 34:
                return j, S_SEGM_TYPE, i, 0, h, w, cs0, cs1, cesc  # malformed: the caller's re-skip reports it
            j, sub = _read_key(buf, j, n, err, _SEG_KEYS, _SEG_KEY_LEN)
            if j < 0:
                return -1, 0, i, 0, h, w, cs0, cs1, cesc
            j = _ws(buf, j, n)
            if j >= n or buf[j] != 58:
                return j, S_SEGM_TYPE, i, 0, h, w, cs0, cs1, cesc
            j = _ws(buf, j + 1, n)
            sub_start = j
            sub_ok = False
            if sub == 1:
                # 1. size: [h, w] of non-negative integers
                if j < n and buf[j] == 91:
                    e1, h, ok1 = _nonneg_int(buf, _ws(buf, j + 1, n), n)
                    j = _ws(buf, e1, n)
                    if ok1 and j < n and buf[j] == 44:
                        e2, w, ok2 = _nonneg_int(buf, _ws(buf, j + 1, n), n)
                        j = _ws(buf, e2, n)
                        if ok2 and j < n and buf[j] == 93:
                            j += 1
                            sub_ok = True
                size_problem = 0 if sub_ok else S_RLE_SIZE
                size_pos = sub_start
            elif sub == 2:
                # 2. counts: a string (compressed RLE) or a list of non-negative integers (uncompressed)
                if j < n and buf[j] == 34:
                    end, escaped = _scan_string(buf, j, n, err)
                    if end < 0:
                        return -1, 0, i, 0, h, w, cs0, cs1, cesc
                    cs0 = j + 1
                    cs1 = end - 1
                    cesc = escaped
                    kind = 1
                    j = end
                    sub_ok = True
                elif j < n and buf[j] == 91:
                    j = _ws(buf, j + 1, n)
                    if j < n and buf[j] == 93:
                        j += 1
                        sub_ok = True
                    else:
                        while True:
                            e1, cv, ok1 = _nonneg_int(buf, j, n)
                            if not ok1:
                                break
                            j = _ws(buf, e1, n)
                            c = buf[j] if j < n else 0
                            if c == 44:
                                j = _ws(buf, j + 1, n)
                            elif c == 93:
                                j += 1
                                sub_ok = True
                                break
                            else:
                                break
                    if sub_ok:
                        kind = 2
                        cs0 = -1
                        cs1 = -1
                        cesc = False
                counts_problem = 0 if sub_ok else S_RLE_COUNTS
                counts_pos = sub_start
            if not sub_ok:
                # 3. an unknown sub-key, or a bad size/counts that a later duplicate may replace: skip its value
                j = _skip_value(buf, sub_start, n, err)
                if j < 0:
                    return -1, 0, i, 0, h, w, cs0, cs1, cesc
            j = _ws(buf, j, n)
            c = buf[j] if j < n else 0
            if c == 44:
                j = _ws(buf, j + 1, n)
            elif c == 125:
                j += 1
                break
            else:
                return j, S_SEGM_TYPE, i, 0, h, w, cs0, cs1, cesc
    if size_problem != 0 and (counts_problem == 0 or size_pos <= counts_pos):
        return j, size_problem, size_pos, 0, h, w, cs0, cs1, cesc
    if counts_problem != 0:
        return j, counts_problem, counts_pos, 0, h, w, cs0, cs1, cesc
    return j, 0, i, kind, h, w, cs0, cs1, cesc


@njit(cache=True, nogil=True)
def _parse_polygons(buf, i, n, rec, fb, nfb):
    """Validate the polygon list at ``buf[i]`` (``[``): a non-empty list of lists of finite numbers, each with an
    even count of at least 6.

    Returns ``(end, problem, pos, index, fb, nfb)``; numbers that might overflow to infinity go to the fallback
    table for Python to check. On a problem ``end`` is meaningless (the caller re-skips the value).
    """
    j = _ws(buf, i + 1, n)
    if j < n and buf[j] == 93:
        return j, S_SEGM_EMPTY, i, 0, fb, nfb
    p = 0
    while True:
        if j >= n or buf[j] != 91:
            return j, S_POLY_TYPE, j, p, fb, nfb
        poly_start = j
        cnt = 0
        j = _ws(buf, j + 1, n)
        if j < n and buf[j] == 93:
            j += 1
        else:
            while True:
                end, neg, mant, q, nd, dnz, is_int, st = _scan_number_call(buf, j, n)
                if st != ST_OK:
                    return j, S_POLY_ITEM if st == ST_INVALID else S_POLY_NONFINITE, j, p, fb, nfb
                if mant != _U0 and min(nd, 19) + q > 308:
                    # |value| < 10**(digits + q): only such a number can overflow, and Python checks it
                    fb = _push_fallback(fb, nfb, rec, F_SEGM, p, j, end)
                    nfb += 1
                cnt += 1
                j = _ws(buf, end, n)
                c = buf[j] if j < n else 0
                if c == 44:
                    j = _ws(buf, j + 1, n)
                elif c == 93:
                    j += 1
                    break
                else:
                    return j, S_POLY_ITEM, j, p, fb, nfb
        if cnt < 6 or cnt % 2 == 1:
            return j, S_POLY_LEN, poly_start, p, fb, nfb
        p += 1
        j = _ws(buf, j, n)
        c = buf[j] if j < n else 0
        if c == 44:
            j = _ws(buf, j + 1, n)
        elif c == 93:
            return j + 1, 0, i, p, fb, nfb
        else:
            return j, S_POLY_TYPE, j, p, fb, nfb


@njit(cache=True, nogil=True)
def _scan_core(buf, image_id, category_id, score, bbox, has_bbox, segm_kind, segm_span, rle_size, counts_span,
               counts_escaped, err, top, final):
    """One pass over the results list; fills the output arrays (capacity ``image_id.shape[0]``).

    Returns ``(n_records, fallback, n_fallback)``; on a problem ``err`` holds
    ``[kind, record, field, pos, what, index, value_start]`` and the scan stops there. ``fallback[:n]`` rows are
    ``(record, field, slot, start, end)`` number tokens for Python's ``float()``; field -1 marks a dead row.

    A piece of the list: without ``top`` the buffer starts at a record (the opening bracket and the separators
    before it lie in earlier pieces); without ``final`` it ends right after a record's separating comma and
    whitespace, where the scan stops (a buffer that ends anywhere else is a syntax error at its end).
    """
    buf = _borrowed(buf)
    err = _borrowed(err)
    image_id = _borrowed(image_id)
    category_id = _borrowed(category_id)
    score = _borrowed(score)
    bbox = _borrowed(bbox)
    has_bbox = _borrowed(has_bbox)
    segm_kind = _borrowed(segm_kind)
    segm_span = _borrowed(segm_span)
    rle_size = _borrowed(rle_size)
    counts_span = _borrowed(counts_span)
    counts_escaped = _borrowed(counts_escaped)
    n = buf.shape[0]
    cap = image_id.shape[0]
    fb = np.empty((64, 5), dtype=np.int64)
    nfb = 0
    pend = np.zeros((6, 4), dtype=np.int64)  # per field: problem, pos, index, value start
    i = 0
    if top:
        i = _ws_hot(buf, 0, n)
        if i >= n:
            err[0] = K_EMPTY
            return 0, fb, 0
        if buf[i] != 91:
            err[0] = K_TOP
            err[3] = i
            return 0, fb, 0
        i = _ws_hot(buf, i + 1, n)
        if i < n and buf[i] == 93:
            i = _ws_hot(buf, i + 1, n)
            if i != n:
                _syntax(err, i, X_END)
            return 0, fb, 0
    rec = 0
    while True:
        # ---- one record: an object whose known keys are parsed in place, the others validated and skipped
        if i >= n:
            if not final and rec > 0:
                return rec, fb, nfb  # the end of a piece, after a record's separator
            _syntax(err, i, X_VALUE)
            return rec, fb, nfb
        if buf[i] != 123:
            err[0] = K_SEMANTIC
            err[1] = rec
            err[3] = i
            err[4] = S_NOT_OBJECT
            err[6] = i
            return rec, fb, nfb
        if rec >= cap:
            err[0] = K_CAPACITY
            return rec, fb, nfb
        bbox[rec, 0] = np.nan
        bbox[rec, 1] = np.nan
        bbox[rec, 2] = np.nan
        bbox[rec, 3] = np.nan
        has_bbox[rec] = False
        segm_kind[rec] = 0
        segm_span[rec, 0] = 0
        segm_span[rec, 1] = 0
        rle_size[rec, 0] = 0
        rle_size[rec, 1] = 0
        counts_span[rec, 0] = 0
        counts_span[rec, 1] = 0
        counts_escaped[rec] = False
        seen = 0  # bit f set once field f was met
        any_pending = False
        rec_fb0 = nfb
        i = _ws_hot(buf, i + 1, n)
        if i < n and buf[i] == 125:
            i += 1
        else:
            while True:
                if i >= n or buf[i] != 34:
                    _syntax(err, i, X_KEY)
                    return rec, fb, nfb
                i, field = _read_key(buf, i, n, err, _REC_KEYS, _REC_KEY_LEN)
                if i < 0:
                    return rec, fb, nfb
                i = _ws_hot(buf, i, n)
                if i >= n or buf[i] != 58:
                    _syntax(err, i, X_COLON)
                    return rec, fb, nfb
                i = _ws_hot(buf, i + 1, n)
                vstart = i
                if i >= n:
                    _syntax(err, i, X_VALUE)
                    return rec, fb, nfb
                if field == 0:
                    i = _skip_value(buf, i, n, err)
                    if i < 0:
                        return rec, fb, nfb
                else:
                    if seen & (1 << field):
                        # duplicate key: the last value wins, so forget what the earlier one left behind
                        pend[field, 0] = 0
                        for k in range(rec_fb0, nfb):
                            if fb[k, 1] == field:
                                fb[k, 1] = -1
                    seen |= 1 << field
                    problem = 0
                    ppos = vstart
                    pidx = 0
                    # i stays at vstart when a value is not fully parsed; such a value is re-skipped below
                    if field <= F_SCORE:
                        end, neg, mant, q, nd, dnz, is_int, st = _scan_number(buf, i, n)
                        if st == ST_INVALID:
                            problem = S_NOT_NUMBER if field == F_SCORE else S_NOT_INT
                        elif field != F_SCORE:
                            i = end
                            if st != ST_OK or not is_int:
                                problem = S_NOT_INT
                            else:
                                iv, fits = _int_value(neg, mant, nd)
                                if not fits:
                                    problem = S_INT_RANGE
                                elif field == F_IMAGE:
                                    image_id[rec] = iv
                                else:
                                    category_id[rec] = iv
                        else:
                            i = end
                            if st == ST_NAN:
                                problem = S_NAN
                            elif st == ST_INF:
                                problem = S_INF
                            else:
                                fv, ok = _to_float(neg, mant, q, nd, dnz, is_int)
                                if not ok:
                                    fb = _push_fallback(fb, nfb, rec, F_SCORE, 0, vstart, end)
                                    nfb += 1
                                elif fv < 0.0:
                                    problem = S_NEGATIVE
                                else:
                                    score[rec] = fv
                    elif field == F_BBOX:
                        bbox[rec, 0] = np.nan
                        bbox[rec, 1] = np.nan
                        bbox[rec, 2] = np.nan
                        bbox[rec, 3] = np.nan
                        has_bbox[rec] = False
                        if buf[i] != 91:
                            problem = S_BBOX_SHAPE
                        else:
                            j = _ws_hot(buf, i + 1, n)
                            if j < n and buf[j] == 93:
                                i = j + 1  # [] counts as no box
                            else:
                                k = 0
                                while True:
                                    end, neg, mant, q, nd, dnz, is_int, st = _scan_number(buf, j, n)
                                    if st != ST_OK:
                                        problem = S_BBOX_ITEM if st == ST_INVALID else (
                                            S_NAN if st == ST_NAN else S_INF)
                                        ppos = j
                                        pidx = k
                                        break
                                    if k < 4:
                                        fv, ok = _to_float(neg, mant, q, nd, dnz, is_int)
                                        if not ok:
                                            fb = _push_fallback(fb, nfb, rec, F_BBOX, k, j, end)
                                            nfb += 1
                                        else:
                                            bbox[rec, k] = fv
                                            if k >= 2 and fv < 0.0 and problem == 0:
                                                problem = S_BBOX_NEG
                                                ppos = j
                                                pidx = k
                                    k += 1
                                    j = _ws_hot(buf, end, n)
                                    c = buf[j] if j < n else 0
                                    if c == 44:
                                        j = _ws_hot(buf, j + 1, n)
                                    elif c == 93:
                                        j += 1
                                        break
                                    else:
                                        problem = S_BBOX_SHAPE  # malformed: the re-skip below reports it
                                        break
                                if problem == 0 or problem == S_BBOX_NEG:
                                    if k != 4:
                                        problem = S_BBOX_SHAPE
                                        ppos = vstart
                                    else:
                                        i = j
                                        has_bbox[rec] = problem == 0
                    else:
                        # ---- segmentation: an RLE object or a list of polygons, validated, spans recorded
                        segm_kind[rec] = 0
                        segm_span[rec, 0] = -1
                        segm_span[rec, 1] = -1
                        rle_size[rec, 0] = -1
                        rle_size[rec, 1] = -1
                        counts_span[rec, 0] = -1
                        counts_span[rec, 1] = -1
                        counts_escaped[rec] = False
                        if buf[i] == 123:
                            end, problem, ppos, kind, h, w, cs0, cs1, cesc = _parse_rle(buf, i, n, err)
                            if end < 0:
                                return rec, fb, nfb
                            if problem == 0:
                                segm_kind[rec] = kind
                                rle_size[rec, 0] = h
                                rle_size[rec, 1] = w
                                counts_span[rec, 0] = cs0
                                counts_span[rec, 1] = cs1
                                counts_escaped[rec] = cesc
                                i = end
                        elif buf[i] == 91:
                            end, problem, ppos, pidx, fb, nfb = _parse_polygons(buf, i, n, rec, fb, nfb)
                            if problem == 0:
                                segm_kind[rec] = 3
                                i = end
                        else:
                            problem = S_SEGM_TYPE
                        if problem == 0:
                            segm_span[rec, 0] = vstart
                            segm_span[rec, 1] = i
                    if problem != 0:
                        # the value breaks a results rule; it must still be valid JSON (else that error wins)
                        if i == vstart:
                            i = _skip_value(buf, vstart, n, err)
                            if i < 0:
                                return rec, fb, nfb
                        pend[field, 0] = problem
                        pend[field, 1] = ppos
                        pend[field, 2] = pidx
                        pend[field, 3] = vstart
                        any_pending = True
                i = _ws_hot(buf, i, n)
                c = buf[i] if i < n else 0
                if c == 44:
                    i = _ws_hot(buf, i + 1, n)
                elif c == 125:
                    i += 1
                    break
                else:
                    _syntax(err, i, X_COMMA_BRACE)
                    return rec, fb, nfb
        # ---- end of the record: the earliest rule broken by a final value, then the required keys
        if any_pending:
            best = -1
            for f in range(1, 6):
                if pend[f, 0] != 0 and (best < 0 or pend[f, 1] < pend[best, 1]):
                    best = f
            if best > 0:
                err[0] = K_SEMANTIC
                err[1] = rec
                err[2] = best
                err[3] = pend[best, 1]
                err[4] = pend[best, 0]
                err[5] = pend[best, 2]
                err[6] = pend[best, 3]
                return rec, fb, nfb
        for f in range(1, 4):
            if not seen & (1 << f):
                err[0] = K_SEMANTIC
                err[1] = rec
                err[2] = f
                err[3] = i - 1
                err[4] = S_MISSING
                return rec, fb, nfb
        rec += 1
        i = _ws_hot(buf, i, n)
        c = buf[i] if i < n else 0
        if c == 44:
            i = _ws_hot(buf, i + 1, n)
        elif c == 93:
            i = _ws_hot(buf, i + 1, n)
            if i != n:
                _syntax(err, i, X_END)
            return rec, fb, nfb
        else:
            _syntax(err, i, X_COMMA_BRACKET)
            return rec, fb, nfb


# --------------------------------------------------------------------------------------------------------------
# Python side: the arrays, the fallback tokens, the error messages
# --------------------------------------------------------------------------------------------------------------
@dataclass
class ResultsArrays:
    """The detections of a results file as flat arrays; N is the number of records.

    Spans are byte offsets ``[start, end)`` into the buffer the arrays were scanned from, which the caller keeps
    alive for ``rle_counts`` and ``segmentation``.
    """

    image_id: np.ndarray        # (N,) int64
    category_id: np.ndarray     # (N,) int64
    score: np.ndarray           # (N,) float64
    bbox: np.ndarray            # (N, 4) float64 [x, y, width, height]; NaN rows where a record has no box
    has_bbox: np.ndarray        # (N,) bool
    segm_kind: np.ndarray       # (N,) int8: 0 none, 1 RLE with string counts, 2 RLE with list counts, 3 polygons
    segm_span: np.ndarray       # (N, 2) int64 span of the whole "segmentation" value (0 where none)
    rle_size: np.ndarray        # (N, 2) int64 (h, w) for kinds 1 and 2 (-1 for polygons, 0 where none)
    counts_span: np.ndarray     # (N, 2) int64 span of the counts string's content (kind 1, no quotes; -1: list counts)
    counts_escaped: np.ndarray  # (N,) bool: the counts string holds JSON escapes

    def __len__(self) -> int:
        return int(self.image_id.shape[0])

    def rle_counts(self, buf: BufferLike, i: int) -> bytes:
        """The counts string of record ``i`` (kind 1) as pycocotools gets it: ``json.loads``'s str, encoded.

        Without escapes this is a plain slice of the buffer; with escapes (RLE strings often hold backslashes,
        written ``\\\\`` in JSON) the string is unescaped exactly as ``json.loads`` does. The str is encoded as
        UTF-8, which pycocotools' ``str.encode()`` also uses (ASCII for any real RLE).
        """
        if self.segm_kind[i] != 1:
            raise ValueError(f"record {i} has no RLE with string counts (segm_kind {int(self.segm_kind[i])})")
        arr = _as_bytes_array(buf)
        s, e = int(self.counts_span[i, 0]), int(self.counts_span[i, 1])
        raw = arr[s:e].tobytes()
        if not self.counts_escaped[i]:
            return raw
        text = json.loads(b'"' + raw + b'"')
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise MecError(f"record {i}: 'segmentation' counts holds an unpaired surrogate escape") from None

    def segmentation(self, buf: BufferLike, i: int) -> object:
        """The Python object ``json.loads`` gives for record ``i``'s segmentation (None where it has none).

        A slow path for polygons and uncompressed RLE: one ``json.loads`` of the value's bytes.
        """
        if self.segm_kind[i] == 0:
            return None
        arr = _as_bytes_array(buf)
        return json.loads(arr[int(self.segm_span[i, 0]):int(self.segm_span[i, 1])].tobytes())


def _as_bytes_array(buf: BufferLike) -> np.ndarray:
    """A read-only (n,) uint8 view of ``buf`` without copying."""
    if isinstance(buf, np.ndarray):
        arr = buf
        if arr.dtype != np.uint8 or arr.ndim != 1:
            if not arr.flags.c_contiguous:
                raise TypeError("scan_results needs a contiguous buffer")
            arr = arr.reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(buf, dtype=np.uint8)
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


_NUMBER_RE = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_EXPECTED = {X_VALUE: "expected a value", X_KEY: "expected a key in double quotes", X_COLON: "expected ':'",
             X_COMMA_BRACKET: "expected ',' or ']'", X_COMMA_BRACE: "expected ',' or '}'",
             X_END: "extra data after the JSON value",
             X_STRING_END: "unterminated string", X_ESCAPE: "invalid escape in a string",
             X_CONTROL: "control character inside a string (write it as an escape)", X_UTF8: "invalid UTF-8"}


def _token(arr: np.ndarray, pos: int) -> bytes:
    """The JSON number token at ``pos`` (b"" if none)."""
    m = _NUMBER_RE.match(arr[pos:pos + 4096].tobytes())
    if m is None:
        return b""
    if m.end() < 4096:
        return m.group(0)
    m = _NUMBER_RE.match(arr[pos:].tobytes())  # a number of more than 4 KB: rare enough to copy the tail
    return m.group(0)


def _shorten(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else f"{text[:20]}...{text[-20:]} ({len(text)} characters)"


def _describe(arr: np.ndarray, pos: int) -> str:
    """A short description of the JSON value starting at ``pos``: 'a string', 'null', '2.5', ..."""
    if pos >= arr.shape[0]:
        return "nothing"
    c = chr(arr[pos])
    words = {'"': "a string", "{": "an object", "[": "a list", "t": "true", "f": "false", "n": "null",
             "N": "NaN", "I": "Infinity"}
    if c in words:
        return words[c]
    if arr[pos:pos + 9].tobytes() == b"-Infinity":
        return "-Infinity"
    tok = _token(arr, pos)
    return _shorten(tok.decode()) if tok else "an invalid value"


def _list_items(arr: np.ndarray, pos: int) -> str:
    """'a list of 3 numbers' / 'a list of 5 items' for the list at ``pos`` (error messages only)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(arr[pos:].tobytes().decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return "a list"
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    noun = "number" if numbers else "item"
    return f"a list of {len(value)} {noun}{'s' if len(value) != 1 else ''}"


def _line_col(arr: np.ndarray, pos: int) -> Tuple[int, int]:
    newlines = np.flatnonzero(arr[:pos] == 10)
    return int(newlines.size) + 1, int(pos - (newlines[-1] if newlines.size else -1))


def _syntax_message(arr: np.ndarray, err: np.ndarray) -> str:
    if err[0] == K_EMPTY:
        return "the file is empty (or only whitespace), expected a JSON list of detections"
    pos = int(err[3])
    line, col = _line_col(arr, pos)
    what = _EXPECTED.get(int(err[4]), "invalid JSON")
    if pos == 0 and arr[:3].tobytes() == b"\xef\xbb\xbf":
        what = "the file starts with a UTF-8 byte-order mark, which JSON readers reject"
    elif pos >= arr.shape[0] and err[4] != X_STRING_END:
        what = f"the file ends early, {what}"
    return f"malformed JSON at line {line} column {col} (byte {pos}): {what}"


def _semantic_message(arr: np.ndarray, err: np.ndarray) -> str:
    rec, field, pos, what, idx, vstart = (int(v) for v in err[1:7])
    name = _FIELD_NAMES.get(field, "")
    head = f"record {rec}: "
    if what == S_NOT_OBJECT:
        return head + f"a detection must be a JSON object, got {_describe(arr, pos)}"
    if what == S_MISSING:
        return head + f"missing '{name}'"
    if what == S_NOT_INT:
        return head + f"'{name}' must be an integer, got {_describe(arr, pos)}"
    if what == S_INT_RANGE:
        return head + f"'{name}' {_shorten(_token(arr, pos).decode())} does not fit a 64-bit integer"
    if what == S_NOT_NUMBER:
        return head + f"'{name}' must be a number, got {_describe(arr, pos)}"
    where = f"'{name}'" if field == F_SCORE else f"'{name}' value {idx}"
    if what == S_NAN:
        return head + f"{where} is NaN"
    if what == S_INF:
        return head + f"{where} is infinite ({_describe(arr, pos)})"
    if what == S_NEGATIVE:
        return head + f"'{name}' must be >= 0, got {float(_token(arr, pos))!r}"
    if what == S_BBOX_SHAPE:
        got = _list_items(arr, vstart) if arr[vstart] == ord("[") else _describe(arr, vstart)
        return head + f"'bbox' must be a list of 4 numbers, got {got}"
    if what == S_BBOX_ITEM:
        return head + f"'bbox' must be a list of 4 numbers, got {_describe(arr, pos)} at index {idx}"
    if what == S_BBOX_NEG:
        side = "width" if idx == 2 else "height"
        return (head + f"bbox {side} {float(_token(arr, pos))!r} is negative "
                "(results use [x, y, width, height])")
    seg = head + "'segmentation' "
    if what == S_SEGM_TYPE:
        return seg + (f"must be an RLE object with 'size' and 'counts' or a list of polygons, "
                      f"got {_describe(arr, vstart)}")
    if what == S_SEGM_EMPTY:
        return seg + "is an empty list (expected polygons, or leave the key out)"
    if what == S_RLE_NO_SIZE:
        return seg + "RLE object has no 'size'"
    if what == S_RLE_NO_COUNTS:
        return seg + "RLE object has no 'counts'"
    if what == S_RLE_SIZE:
        return seg + f"size must be [height, width] of non-negative integers, got {_describe(arr, pos)}"
    if what == S_RLE_COUNTS:
        return seg + (f"counts must be a string or a list of non-negative integers, "
                      f"got {_describe(arr, pos)}")
    if what == S_POLY_TYPE:
        return seg + f"polygon {idx} must be a list of numbers, got {_describe(arr, pos)}"
    if what == S_POLY_ITEM:
        return seg + f"polygon {idx} must hold only numbers, got {_describe(arr, pos)}"
    if what == S_POLY_LEN:
        return seg + (f"polygon {idx} is {_list_items(arr, pos)}; a polygon needs an even number "
                      "of coordinates, at least 6")
    if what == S_POLY_NONFINITE:
        return seg + f"polygon {idx} holds {_describe(arr, pos)}, not a finite number"
    return head + "invalid record"


def _python_float(tok: bytes) -> float:
    """``float(json.loads(tok))`` for a JSON number token, without building the int of a huge integer."""
    value = float(tok)
    if value == 0.0 and not any(c in tok for c in b".eE"):
        return 0.0  # a JSON integer is a Python int: -0 is 0
    return value


def parse_number_tokens(tokens) -> Tuple[np.ndarray, np.ndarray]:
    """Parse JSON number tokens (bytes) exactly as ``scan_results`` does: numba first, Python's float() for the rest.

    Returns ``(values, fast)``, both (len(tokens),): the float64 values (NaN for a token that is not a JSON
    number) and whether the numba path decided each. For tests and benchmarks of the number parser.
    """
    joined = b"".join(tokens)
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    values = np.empty(len(tokens), dtype=np.float64)
    fast = np.empty(len(tokens), dtype=np.bool_)
    arr = _as_bytes_array(joined if joined else b" ")
    _parse_tokens(arr, starts, ends, values, fast)
    for k in np.flatnonzero(~fast).tolist():
        values[k] = _python_float(tokens[k]) if _NUMBER_RE.fullmatch(tokens[k]) else math.nan
    return values, fast


def _apply_fallback(arr: np.ndarray, fb: np.ndarray, score: np.ndarray, bbox: np.ndarray,
                    has_bbox: np.ndarray) -> Tuple[int, int, str]:
    """Parse the tokens the numba pass left to Python's ``float()`` and check them; fills score and bbox.

    ``fb`` is (M, 5): record, field, slot, start, end. Returns the first problem as (record, pos, message), or
    (-1, -1, "") if none.
    """
    first = (-1, -1, "")
    for rec, field, slot, start, end in fb.tolist():
        if field < 0:
            continue
        tok = arr[start:end].tobytes()
        value = _python_float(tok)
        problem = ""
        if field == F_SCORE:
            if math.isinf(value):
                problem = f"'score' {_shorten(tok.decode())} overflows to infinity"
            elif value < 0.0:
                problem = f"'score' must be >= 0, got {value!r}"
            else:
                score[rec] = value
        elif field == F_BBOX:
            if math.isinf(value):
                problem = f"'bbox' value {slot} {_shorten(tok.decode())} overflows to infinity"
            elif slot >= 2 and value < 0.0:
                side = "width" if slot == 2 else "height"
                problem = f"bbox {side} {value!r} is negative (results use [x, y, width, height])"
            else:
                bbox[rec, slot] = value
        elif math.isinf(value):
            problem = f"'segmentation' polygon {slot} value {_shorten(tok.decode())} overflows to infinity"
        if problem:
            if field == F_BBOX:
                has_bbox[rec] = False
            if first[0] < 0 or (rec, start) < first[:2]:
                first = (rec, start, f"record {rec}: {problem}")
    return first


def scan_results(buf: BufferLike, source: str = "results") -> ResultsArrays:
    """Read a detection results list (the JSON text in ``buf``) into flat arrays, validating every record.

    ``buf`` is the file's bytes (bytes, bytearray, memoryview or a uint8 numpy array); it is not copied, and
    the returned spans index into it. Rules (those pycocotools and lvis-api rely on):

    - the top level is a JSON list of objects; unknown keys are validated and skipped; the last of duplicate
      keys wins;
    - ``image_id`` and ``category_id`` are required JSON integers (no fraction or exponent) within int64;
    - ``score`` is a required finite, non-negative JSON number (values above 1 are allowed);
    - ``bbox`` is optional: a list of exactly 4 finite numbers with width and height >= 0; ``[]`` is no box;
    - ``segmentation`` is optional: ``{"size": [h, w], "counts": "..." | [ints >= 0]}`` or a non-empty list
      of polygons, each an even number (at least 6) of finite numbers.

    Raises ``MecError(message, source)`` naming the record and the problem, or the line, column and byte of
    malformed JSON (which takes precedence, as ``json.load`` would fail first).
    """
    arr = _as_bytes_array(buf)
    n = int(arr.shape[0])
    # 1. a valid record takes at least 40 bytes plus a separator, so this bounds N; np.empty reserves address
    #    space only, and the pages past the last record are never touched
    cap = n // 41 + 1
    for _attempt in range(2):
        out = _allocate(cap)
        err = np.zeros(8, dtype=np.int64)
        count, fb, nfb = _scan_core(arr, out["image_id"], out["category_id"], out["score"], out["bbox"],
                                    out["has_bbox"], out["segm_kind"], out["segm_span"], out["rle_size"],
                                    out["counts_span"], out["counts_escaped"], err, True, True)
        if err[0] != K_CAPACITY:
            break
        # unreachable by step 1's bound (records before this one were valid); every record starts with '{'
        cap = int(np.count_nonzero(arr == 123)) + 1
    # 2. numbers left to Python, then the first problem of all (malformed JSON first, as json.load fails first)
    fb_rec, fb_pos, fb_message = _apply_fallback(arr, fb[:nfb], out["score"], out["bbox"], out["has_bbox"])
    if err[0] != K_NONE or fb_rec >= 0:
        check = np.zeros(8, dtype=np.int64)
        if err[0] in (K_SYNTAX, K_EMPTY):
            raise MecError(_syntax_message(arr, err), source)
        if _validate_document(arr, check) < 0:
            raise MecError(_syntax_message(arr, check), source)
        if err[0] == K_TOP:
            raise MecError(f"the top level must be a JSON list of detections, got {_describe(arr, int(err[3]))}",
                           source)
        if fb_rec >= 0 and (err[0] != K_SEMANTIC or (fb_rec, fb_pos) < (int(err[1]), int(err[3]))):
            raise MecError(fb_message, source)
        raise MecError(_semantic_message(arr, err), source)
    return ResultsArrays(**{k: v[:count] for k, v in out.items()})


SEGM_FIELDS = ("segm_span", "rle_size", "counts_span", "counts_escaped")


def _allocate(cap: int, segm: bool = True) -> dict:
    """Output arrays for up to ``cap`` records (the scanner writes every field of every record; pages past the last
    record are never touched); without ``segm``, the segmentation fields are left out."""
    out = {"image_id": np.empty(cap, np.int64), "category_id": np.empty(cap, np.int64),
           "score": np.empty(cap, np.float64), "bbox": np.empty((cap, 4), np.float64),
           "has_bbox": np.empty(cap, np.bool_), "segm_kind": np.empty(cap, np.int8)}
    if segm:
        out.update(segm_span=np.empty((cap, 2), np.int64), rle_size=np.empty((cap, 2), np.int64),
                   counts_span=np.empty((cap, 2), np.int64), counts_escaped=np.empty(cap, np.bool_))
    return out


PIECE_BYTES = 4 << 20  # a large file is scanned in pieces of about this size, side by side
_PIECE_START = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*(\{)[ \t\r\n]*\"")  # a record's end, a comma, a record


def _open_error(path: Path, exc: OSError) -> MecError:
    if isinstance(exc, FileNotFoundError):
        return MecError("no such results file", path)
    if isinstance(exc, IsADirectoryError):
        return MecError("is a directory, not a results file", path)
    return MecError(f"cannot read the results file ({exc.strerror or exc})", path)


def _piece_starts(path: Path, size: int, piece_bytes: int) -> list:
    """Likely record starts about ``piece_bytes`` apart: a '{' after a record's '}' and a comma. A guess (a string
    may hold that text); :func:`_scan_pieces` confirms each one by the scan of the piece before it."""
    starts = [0]
    with open(path, "rb") as f:
        for off in range(piece_bytes, size - piece_bytes // 2, piece_bytes):
            f.seek(off)
            match = _PIECE_START.search(f.read(1 << 16))
            if match and off + match.start(1) > starts[-1]:
                starts.append(off + match.start(1))
    return starts


def _lazy_zeros(shape, dtype) -> np.ndarray:
    """A zero array whose pages cost no memory until written (an anonymous mapping, whatever the allocator does)."""
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class _Pieces:
    """The state of :func:`_scan_pieces`: the output arrays, and each piece's first record once known."""

    def __init__(self, path: Path, starts: list, size: int, piece_bytes: int):
        self.path, self.starts, self.ends = path, starts, starts[1:] + [size]
        cap = size // 41 + 1  # a valid record takes at least 40 bytes plus a separator
        self.out = _allocate(cap, segm=False)
        self.out.update({f: _lazy_zeros((cap, 2) if f != "counts_escaped" else (cap,),
                                        np.bool_ if f == "counts_escaped" else np.int64) for f in SEGM_FIELDS})
        self.first = [0] + [None] * len(starts)  # first[k]: the index of piece k's first record; -1: give up
        self.ready = [threading.Event() for _ in range(len(starts) + 1)]
        self.ready[0].set()
        self.local = threading.local()
        self.longest = max(e - s for s, e in zip(starts, self.ends))

    def scratch(self):
        """This thread's buffer and arrays, made once and reused for each of its pieces."""
        if not hasattr(self.local, "buf"):
            self.local.buf = np.empty(self.longest, np.uint8)
            self.local.arrays = _allocate(self.longest // 41 + 1)
        return self.local.buf, self.local.arrays

    def scan(self, k: int) -> None:
        """Scan piece k into this thread's scratch, then, once piece k - 1 is placed, copy it after it."""
        ok, n = False, 0
        try:
            buf, tmp = self.scratch()
            start, end = self.starts[k], self.ends[k]
            with open(self.path, "rb") as f:
                f.seek(start)
                got = f.readinto(memoryview(buf)[:end - start])
            arr = _as_bytes_array(buf[:got])  # read-only, as a whole file's: the kernels compile once for both
            err = np.zeros(8, dtype=np.int64)
            n, fb, nfb = _scan_core(arr, tmp["image_id"], tmp["category_id"], tmp["score"], tmp["bbox"],
                                    tmp["has_bbox"], tmp["segm_kind"], tmp["segm_span"], tmp["rle_size"],
                                    tmp["counts_span"], tmp["counts_escaped"], err, k == 0,
                                    k == len(self.starts) - 1)
            ok = got == end - start and err[0] == K_NONE and \
                _apply_fallback(arr, fb[:nfb], tmp["score"], tmp["bbox"], tmp["has_bbox"])[0] < 0
        finally:
            self.ready[k].wait()
            at = self.first[k]
            if not ok or at < 0:
                self.first[k + 1] = -1
            else:
                for key in ("image_id", "category_id", "score", "bbox", "has_bbox", "segm_kind"):
                    self.out[key][at:at + n] = tmp[key][:n]
                rows = np.flatnonzero(tmp["segm_kind"][:n])
                if rows.size:  # spans into the piece become spans into the file
                    self.out["segm_span"][at + rows] = tmp["segm_span"][rows] + start
                    counts = tmp["counts_span"][rows]
                    self.out["counts_span"][at + rows] = np.where(counts >= 0, counts + start, counts)
                    self.out["rle_size"][at + rows] = tmp["rle_size"][rows]
                    self.out["counts_escaped"][at + rows] = tmp["counts_escaped"][rows]
                self.first[k + 1] = at + n
            self.ready[k + 1].set()


def _scan_pieces(path: Path, size: int, piece_bytes: int, progress=None):
    """The arrays of a large file scanned piece by piece on the cores, holding one piece's bytes per core instead of
    the whole file; None where the pieces do not give them exactly (the caller then scans the whole file, which
    also words any error). Spans are made file offsets. ``progress(bytes_done, size)`` after each piece."""
    pieces = _Pieces(path, _piece_starts(path, size, piece_bytes), size, piece_bytes)
    count = len(pieces.starts)
    with ThreadPoolExecutor(max(1, min(2, count, os.cpu_count() or 1))) as pool:
        for k, job in enumerate([pool.submit(pieces.scan, k) for k in range(count)]):
            job.result()
            if progress is not None:
                progress(pieces.ends[k], size)
    total = pieces.first[count]
    if total < 0:
        return None
    return ResultsArrays(**{k: v[:total] for k, v in pieces.out.items()})


def read_results_file(path: Union[str, Path], piece_bytes: Optional[int] = None,
                      progress=None) -> Tuple[ResultsArrays, np.ndarray]:
    """Read and scan the results file at ``path``.

    Returns ``(arrays, buf)``: ``buf`` is the file's bytes as a read-only (n,) uint8 array, the buffer that the
    spans of ``arrays`` refer to (pass it to ``rle_counts`` and ``segmentation``; keep it while you need them).
    A file of at least two pieces (``piece_bytes``, default :data:`PIECE_BYTES`) is scanned in pieces, side by side;
    ``buf`` is then read only when some record has a segmentation (else it is empty), so box results never hold the
    file's bytes at once.
    ``progress(bytes_done, bytes_total)`` is called as the pieces are read.
    """
    path = check_input(path, "results file", missing="no such results file")  # a FIFO or a device is never opened
    piece_bytes = piece_bytes or PIECE_BYTES
    try:
        size = path.stat().st_size
        arrays = _scan_pieces(path, size, piece_bytes, progress) if size >= 2 * piece_bytes else None
        if arrays is not None and not arrays.segm_kind.any():
            buf = np.zeros(0, np.uint8)
        else:
            buf = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise _open_error(path, exc) from None
    buf.flags.writeable = False
    if arrays is None:
        arrays = scan_results(buf, source=str(path))
    return arrays, buf
