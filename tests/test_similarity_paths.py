"""item_similarity (cosine, BM25) on shapes that reach every path of the top-k kernel.

The self-join kernel picks a path per item row: a row of one user (the item's weight times
that user's weights), short sparse rows (at most ``2 * top_n + 16`` candidates), long sparse
rows in ascending or in scattered candidate order, and dense rows (the item's users touch a
quarter of all items or more); BM25 weights <= 0 switch off the positive-only shortcuts.
Every case here is compared with a plain dense NumPy reference for count_self False/True,
float32/float64 input and n_threads 1/2:

* single-user items next to heavy users whose rows hold top_n - 1 ... 3 * top_n items, with
  integer data (ties everywhere, ties at the cut, the item itself above / at / below the cut
  of its user's ranking) and with values 1 ulp apart (BM25 products of distinct weights that
  round to the same float);
* hub items reached through many users: hundreds of candidates, scattered or ascending, with
  more ties at the k-th score than places left and than the candidate buffer holds, and tie
  counts from ``cap - 2`` to ``cap + 2`` (``cap = 2 * top_n + 16``, the candidate buffer);
  with top_n 300 also ``cap`` ties followed by a lower candidate, where one write past the
  buffer leaves its allocation for n_threads 1 (AddressSanitizer builds report it);
* dense rows (a user holding 30 % of the items, or every item: BM25 weights < 0) among them;
* hypothesis-drawn mixtures of the above.

Each test also asserts that its data reach what they were built for (ties split by the cut
on each kind of row, the item itself at the top / last kept / first left out, products tied
at the cut that the weights alone would order the other way), and the comparison itself is
shown to reject a wrong tie choice, a score 1 ulp off and a missing entry.

Reference: the weights of the module docstring in float64, cast to the result dtype; every
score is summed in that dtype in ascending user order, as the kernel does.  A score that is
one product is then exact.  Sums of several products may differ from the kernel's by rounding
only if it summed in another order; candidates whose ordered products are identical have
bitwise-equal scores in any order, so those ties are compared exactly, and only candidates
with different products within the rounding bound of each other may be ordered either way.
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_similarity import ref_weights

from ecomcore.similarity import _weights, item_similarity

K1, B = 1.2, 0.75
DTYPES = [np.float32, np.float64]
METHODS = ["cosine", "bm25"]


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------


def _column_sums(x: np.ndarray) -> np.ndarray:
    """Column sums added user after user (numpy's ``sum(axis=0)`` may pair them up)."""
    out = np.zeros(x.shape[1])
    for row in x:
        out += row
    return out


def dense_weights(x: np.ndarray, method: str) -> np.ndarray:
    """Users x items weights (float64), vectorised, same operations as the module docstring."""
    nz = x != 0
    if method == "cosine":
        norm = np.sqrt(_column_sums(x * x))
        return np.where(nz, x / np.where(norm > 0, norm, 1.0), 0.0)
    idf = np.log(float(x.shape[1])) - np.log1p(nz.sum(axis=1).astype(np.float64))
    length = _column_sums(x)
    norm = (1.0 - B) + B * length / length.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        w = x * (K1 + 1.0) / (K1 * norm[None, :] + x) * idf[:, None]
    return np.where(nz, w, 0.0)


class Ref:
    """Scores, candidates and per-row facts of one (matrix, method) pair."""

    def __init__(self, X: np.ndarray, method: str):
        self.method = method
        self.vdt = np.dtype(X.dtype)
        x = X.astype(np.float64)
        self.x = x
        n_users, n = x.shape
        self.n = n
        w64 = dense_weights(x, method)
        # the reference's ties must be the kernel's: its weights must be bit for bit the library's
        lib = _weights(sp.csr_array(x), method, K1, B).toarray()
        np.testing.assert_array_equal(w64, lib, err_msg="reference weights differ from the library's")
        W = w64.astype(self.vdt)
        self.W = W
        nz = x != 0
        self.items_of = [np.flatnonzero(nz[u]) for u in range(n_users)]
        self.users_of = [np.flatnonzero(nz[:, i]) for i in range(n)]
        S = np.zeros((n, n), self.vdt)
        npair = np.zeros((n, n), np.int64)
        A = np.zeros((n, n), np.float64)
        for u, J in enumerate(self.items_of):  # ascending users: the kernel's summation order
            if J.size == 0:
                continue
            wj = W[u, J]
            prod = wj[:, None] * wj[None, :]  # in the result dtype
            ix = np.ix_(J, J)
            S[ix] += prod
            npair[ix] += 1
            A[ix] += np.abs(prod.astype(np.float64))
        self.S = S
        self.cand = npair > 0
        # one product: exact; k products: any other summation order is within this bound
        self.tol = np.where(npair > 1, 2.0 * npair * np.finfo(self.vdt).eps * A, 0.0)
        self.single = np.array([u.size == 1 for u in self.users_of])
        rowlen = nz.sum(axis=1)
        work = nz.T.astype(np.int64) @ rowlen
        self.dense = work >= max(n // 4, 1)
        self.unordered = np.zeros(n, bool)
        self.last_touched = np.full(n, -1)  # the last candidate other than the item, in touched order
        for i in range(n):
            if self.users_of[i].size > 1:
                seq = np.concatenate([self.items_of[u] for u in self.users_of[i]])
                _, first = np.unique(seq, return_index=True)
                touched = seq[np.sort(first)]
                self.unordered[i] = bool(np.any(np.diff(touched) < 0))
                self.last_touched[i] = touched[touched != i][-1]

    def key(self, i: int, j: int) -> tuple:
        """The products summed into score (i, j), in summation order."""
        us = [u for u in self.users_of[i] if self.x[u, j] != 0]
        return tuple((self.W[us, i] * self.W[us, j]).tolist())

    def ranking(self, top_n: int, count_self: bool):
        r, c = np.nonzero(self.cand)
        if not count_self:
            keep = r != c
            r, c = r[keep], c[keep]
        s = self.S[r, c].astype(np.float64)
        order = np.lexsort((c, -s, r))
        r, c, s = r[order], c[order], s[order]
        counts = np.bincount(r, minlength=self.n)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(r.size) - starts[r]
        total = np.minimum(counts, top_n)
        return r, c, s, rank, counts, starts, total

    def check(self, got: sp.csr_array, top_n: int, count_self: bool) -> Counter:
        """Assert ``got`` is the reference's top-n (up to rounding-level near-ties); stats."""
        n, stats = self.n, Counter()
        assert got.shape == (n, n)
        assert got.dtype == self.vdt
        assert got.has_sorted_indices
        gr = np.repeat(np.arange(n), np.diff(got.indptr))
        gc = got.indices.astype(np.int64)
        assert np.all(gr != gc), "the item itself is stored"
        assert np.all(self.cand[gr, gc]), "a stored item shares no user with the row's item"
        assert np.all((np.diff(gc) > 0) | (np.diff(gr) > 0)), "indices not strictly ascending"
        diff = np.abs(got.data.astype(np.float64) - self.S[gr, gc].astype(np.float64))
        bad = diff > self.tol[gr, gc]
        assert not bad.any(), (
            f"scores differ: (row, col, got, ref) = "
            f"{list(zip(gr[bad][:5], gc[bad][:5], got.data[bad][:5], self.S[gr[bad], gc[bad]][:5]))}"
        )

        r, c, s, rank, counts, starts, total = self.ranking(top_n, count_self)
        kept = rank < total[r]
        er, ec = r[kept & (r != c)], c[kept & (r != c)]
        o = np.lexsort((ec, er))
        er, ec = er[o], ec[o]
        exp_indptr = np.concatenate([[0], np.cumsum(np.bincount(er, minlength=n))])
        if np.array_equal(exp_indptr, got.indptr):
            mism = np.unique(er[ec != gc])
        else:
            mism = np.flatnonzero(np.diff(exp_indptr) != np.diff(got.indptr))
            same = np.setdiff1d(np.arange(n), mism)
            for i in same:
                a, b = exp_indptr[i], exp_indptr[i + 1]
                if not np.array_equal(ec[a:b], gc[got.indptr[i] : got.indptr[i + 1]]):
                    mism = np.append(mism, i)
        for i in mism:
            stats["ambiguous"] += self._check_row(int(i), got, top_n, count_self)

        # what the data exercised
        has = counts > 0
        kth = np.full(n, np.nan)
        kth[has] = s[starts[has] + total[has] - 1]
        gt = np.bincount(r, weights=s > kth[r], minlength=n)
        eq = np.bincount(r, weights=s == kth[r], minlength=n)
        tie_cut = has & (eq > total - gt)  # the cut splits the candidates tied at the k-th score
        cap = 2 * min(top_n, n) + 16
        sparse = ~self.dense
        stats["tie_cut"] += int(tie_cut.sum())
        stats["tie_cut_over_cap"] += int((tie_cut & (eq > cap)).sum())
        stats["single_user_tie_cut"] += int((tie_cut & self.single).sum())
        stats["single_user_cut"] += int((self.single & (counts > top_n)).sum())
        stats["long_unordered_tie"] += int((tie_cut & sparse & ~self.single & self.unordered & (counts > cap)).sum())
        for i in np.flatnonzero(tie_cut & sparse & ~self.single & self.unordered & (counts > cap)):
            if abs(eq[i] - cap) <= 2:  # ties against the candidate buffer's size
                stats[f"long_unordered_ties_cap{int(eq[i] - cap):+d}"] += 1
            # the cut gathers the tied merchants in touched order, writing one entry past the
            # last tie for each later candidate: past the buffer were ``cap`` ties gathered
            if eq[i] == cap and self.S[i, self.last_touched[i]] != kth[i]:
                stats["long_unordered_ties_cap+0_untied_last"] += 1
        stats["long_ordered_tie"] += int((tie_cut & sparse & ~self.single & ~self.unordered & (counts > cap)).sum())
        stats["short_unordered_tie"] += int((tie_cut & sparse & self.unordered & (counts <= cap)).sum())
        stats["dense_tie"] += int((tie_cut & self.dense & ~self.single).sum())
        stats["dense_cut"] += int((self.dense & ~self.single & (counts > top_n)).sum())
        if count_self:
            me = r == c
            i, rk = r[me], rank[me]
            stats["self_top"] += int(((rk == 0) & (total[i] > 1)).sum())
            stats["self_cut"] += int(((rk == total[i] - 1) & (total[i] > 1) & tie_cut[i]).sum())
            stats["self_next"] += int((rk == total[i]).sum())  # first one left out
            stats["self_below"] += int((rk >= total[i]).sum())
        return stats

    def _check_row(self, i: int, got: sp.csr_array, top_n: int, count_self: bool) -> int:
        """A row that differs from the reference's choice: valid only through near-ties."""
        cand = np.flatnonzero(self.cand[i])
        if not count_self:
            cand = cand[cand != i]
        total = min(cand.size, top_n)
        g = got.indices[got.indptr[i] : got.indptr[i + 1]].astype(np.int64)
        ctx = f"row {i}: got {g.tolist()} scores {got.data[got.indptr[i] : got.indptr[i + 1]].tolist()}"
        if count_self and self.cand[i, i]:
            assert g.size in (total, total - 1), f"{ctx}: {g.size} entries, expected {total} or {total - 1}"
            if g.size == total - 1:
                g = np.append(g, i)
        else:
            assert g.size == total, f"{ctx}: {g.size} entries, expected {total}"
        d = np.setdiff1d(cand, g)
        S, tol = self.S[i].astype(np.float64), self.tol[i]
        sk, sd = S[g][:, None], S[d][None, :]
        ok = (sk > sd) | ((sk == sd) & (g[:, None] < d[None, :]))
        used = 0
        for a, b in zip(*np.nonzero(~ok)):
            k, j = int(g[a]), int(d[b])
            ref = sorted(cand.tolist(), key=lambda m: (-S[m], m))[:total]
            msg = f"{ctx}; reference keeps {ref}: kept {k} ({S[k]!r}) over {j} ({S[j]!r})"
            assert self.key(i, k) != self.key(i, j), msg + " with the same products"
            assert S[j] - S[k] <= tol[k] + tol[j], msg
            used = 1
        return used


@functools.cache
def get(builder, args: tuple, method: str) -> tuple:
    """``builder(*args)`` and its reference, built once per session."""
    X = builder(*args)
    return X, Ref(X, method)


def run_all(X: np.ndarray, ref: Ref, top_n: int) -> Counter:
    """item_similarity for count_self False/True and n_threads 1/2, each checked; stats."""
    stats = Counter()
    for count_self in (False, True):
        outs = []
        for nt in (1, 2):
            got = item_similarity(sp.csr_array(X), method=ref.method, top_n=top_n, count_self=count_self,
                                  n_threads=nt)  # fmt: skip
            outs.append(got)
        a, b = outs
        assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.data, b.data), "the result depends on n_threads"
        stats += ref.check(a, top_n, count_self)
    return stats


# --------------------------------------------------------------------------------------------
# Matrices
# --------------------------------------------------------------------------------------------


def _values(kind: str, dtype, rng):
    if kind == "int":  # few distinct values: exact ties
        return lambda: float(rng.integers(1, 4))
    # base + k ulp: neighbouring floats of dtype; a few bases, so that the products of an
    # item's weight with its neighbours' may fall in a binade where they round together
    bases = [3.0, 1.25, 5.5, 0.8125]
    ulps = [float(np.spacing(np.asarray(b, dtype))) for b in bases]

    def val() -> float:
        t = int(rng.integers(len(bases)))
        return bases[t] + ulps[t] * int(rng.integers(0, 6))

    return val


def _assemble(entries: list, n_users: int, n_items: int, dtype, perm_items=None, perm_users=None) -> np.ndarray:
    x = np.zeros((n_users, n_items))
    for u, i, v in entries:
        x[u, i] = v
    if perm_users is not None:
        x = x[perm_users]
    if perm_items is not None:
        x = x[:, perm_items]
    out = x.astype(dtype)
    assert np.array_equal(out.astype(np.float64), x), "values not representable in the dtype"
    return out


def single_user_matrix(top_n: int, kind: str, dtype, seed: int = 0, dense_user: float = 0.0,
                       all_user: bool = False) -> np.ndarray:  # fmt: skip
    """Heavy users (rows of top_n - 1 ... 3 * top_n items) whose items mostly have no other user.

    Per row length three heavy users: all items single-user, a third shared with a pool of
    items that light users hold, all single-user with one value.  Light users hold pool items
    and a few single-user items.  ``dense_user``: one more user holds that fraction of all
    items (dense rows); ``all_user``: one more holds every item (BM25 weights < 0).
    """
    rng = np.random.default_rng(seed)
    val = _values(kind, dtype, rng)
    n_pool, n_light = 2 * top_n + 4, 3 * top_n + 6
    entries, pool, n_items = [], list(range(n_pool)), n_pool
    for p in pool:
        for u in rng.choice(n_light, size=int(rng.integers(2, 6)), replace=False):
            entries.append((int(u), p, val()))
    user = n_light
    for L in sorted({max(top_n - 1, 1), top_n, top_n + 1, top_n + 2, 3 * top_n}):
        for variant in ("single", "mixed", "equal"):
            n_shared = L // 3 if variant == "mixed" else 0
            v0 = val()
            for _ in range(L - n_shared):
                entries.append((user, n_items, v0 if variant == "equal" else val()))
                n_items += 1
            for p in rng.choice(pool, size=n_shared, replace=False):
                entries.append((user, int(p), val()))
            user += 1
    for u in range(n_light):
        for _ in range(int(rng.integers(0, 3))):
            entries.append((u, n_items, val()))
            n_items += 1
    if dense_user:
        for i in rng.choice(n_items, size=int(dense_user * n_items), replace=False):
            entries.append((user, int(i), float(rng.integers(1, 3))))
        user += 1
    if all_user:
        for i in range(n_items):
            entries.append((user, i, float(rng.integers(1, 3))))
        user += 1
    return _assemble(entries, user, n_items, dtype, rng.permutation(n_items), rng.permutation(user))


def cut_collisions(X: np.ndarray, top_n: int) -> list:
    """Single-user item rows where BM25 rounds distinct weights to tied products at the cut.

    For each single-user item i of user u (weight a), rank u's items by (weight desc, index
    asc), without i (first count) or with i (second count): how often the last kept j and
    the first left out k have distinct weights, equal products ``a * w``, and k < j, so that
    ranking the products keeps k where ranking the weights keeps j.
    """
    x = X.astype(np.float64)
    W = dense_weights(x, "bm25").astype(X.dtype)
    nz = x != 0
    out = [0, 0]
    for i in np.flatnonzero(nz.sum(axis=0) == 1):
        u = int(np.flatnonzero(nz[:, i])[0])
        items = np.flatnonzero(nz[u])
        a = W[u, i]
        for c, J in enumerate((items[items != i], items)):
            if J.size <= top_n:
                continue
            b = W[u, J]
            o = np.lexsort((J, -b.astype(np.float64)))
            j, k = o[top_n - 1], o[top_n]
            out[c] += int(b[j] != b[k] and a * b[j] == a * b[k] and J[k] < J[j])
    return out


@functools.cache
def near_seed(top_n: int, dtype) -> int:
    """The first seed whose 'near' matrix has cut collisions in both counts."""
    for seed in range(500):
        if min(cut_collisions(single_user_matrix(top_n, "near", dtype, seed), top_n)) > 0:
            return seed
    raise AssertionError(f"no seed gives BM25 product collisions at the cut (top_n={top_n})")


HUBS = ((12, 20, False), (8, 25, True), (20, 12, False), (5, 40, True), (16, 15, False))


def hub_matrix(top_n: int, dtype, seed: int = 0) -> np.ndarray:
    """Hub items held by m users with R other items each: rows of ~m * R candidates.

    Most of a hub user's items have no other user (one big tie class per hub value 1 or 2);
    a few are held by two users of the hub (sums of two products, above the ties) or by a
    filler user (below).  Every hub user holds R + 1 items (same BM25 idf).  Ordered hubs
    take consecutive item ids, user after user, so their candidates arrive in ascending order;
    the other hubs and the fillers are scattered by a permutation.
    """
    rng = np.random.default_rng(seed)
    n_fill = 150
    fill_users = list(range(n_fill))
    entries, n_items, user, ordered_ids = [], 0, n_fill, []
    for m, R, ordered in HUBS:
        first = n_items
        hub = n_items
        n_items += 1
        users = list(range(user, user + m))
        user += m
        n_double = int(rng.integers(0, top_n + 1))
        slots = {u: R for u in users}
        for u in users:
            entries.append((u, hub, float(rng.integers(1, 3))))
        for u in users:
            for _ in range(slots[u]):
                r = rng.random()
                if r < 0.05 and n_double > 0:
                    others = [v for v in users if v > u and slots[v] > 0]
                    if others:
                        v = others[int(rng.integers(len(others)))]
                        slots[v] -= 1
                        n_double -= 1
                        entries += [(u, n_items, 1.0), (v, n_items, 1.0)]
                        n_items += 1
                        continue
                entries.append((u, n_items, 1.0))
                if r > 0.95:
                    entries.append((fill_users[int(rng.integers(n_fill))], n_items, 1.0))
                n_items += 1
            slots[u] = 0
        if ordered:
            ordered_ids.append(np.arange(first, n_items))
    for u in fill_users:
        for _ in range(int(rng.integers(1, 3))):
            entries.append((u, n_items, float(rng.integers(1, 3))))
            n_items += 1
    fixed = np.concatenate(ordered_ids)
    free = np.setdiff1d(np.arange(n_items), fixed)
    perm = np.arange(n_items)
    perm[free] = rng.permutation(free)
    return _assemble(entries, user, n_items, dtype, perm_items=perm)


def tie_count_matrix(top_n: int, dtype, seed: int = 0, offsets: tuple | None = None, depths: tuple | None = None,
                     n_pad: int = 0, untied_last: bool = False) -> np.ndarray:  # fmt: skip
    """Hub rows (scattered candidates, more than the buffer) with e ties at the k-th score.

    For e around the candidate buffer ``cap = 2 * top_n + 16``: each hub has 4 users holding
    it (value 1) and the same number of other items: d < top_n items shared by two of them
    (scores above), e items of their own (value 1: the tie), the rest shared with a filler
    user (scores below).  Fillers keep the rows sparse.

    ``offsets``: e = cap + offset (default -2 ... 2, and 2 * cap); ``depths``: the d of every
    e (default 0, top_n - 1 and a random one); ``n_pad``: items held by the fillers alone (a
    row is dense once its users hold n_items / 4 items, so long rows need many items);
    ``untied_last``: each hub's last user (the last one summed) holds a filler item after its
    other items, so the hub's last candidate in touched order scores below the tie.
    """
    rng = np.random.default_rng(seed)
    cap = 2 * top_n + 16
    n_fill = 60
    fillers = list(range(n_fill))
    entries, n_items, user = [], 0, n_fill
    last_held = []  # per hub: the last user's items, and its filler items
    ties = (cap - 2, cap - 1, cap, cap + 1, cap + 2, 2 * cap) if offsets is None else [cap + o for o in offsets]
    for e in ties:
        for d in (0, top_n - 1, int(rng.integers(0, top_n))) if depths is None else depths:
            m = 4
            users = list(range(user, user + m))
            user += m
            R = -(-(e + 2 * d) // m) + 3
            held = {u: [] for u in users}
            hub = n_items
            n_items += 1
            for k in range(d):
                u, v = users[k % m], users[(k + 1) % m]
                held[u].append(n_items)
                held[v].append(n_items)
                n_items += 1
            for k in range(e):
                held[users[(k + d) % m]].append(n_items)
                n_items += 1
            own = len(held[users[-1]])
            for u in users:
                entries.append((u, hub, 1.0))
                while len(held[u]) < R:
                    entries.append((fillers[int(rng.integers(n_fill))], n_items, 1.0))
                    held[u].append(n_items)
                    n_items += 1
                entries += [(u, i, 1.0) for i in held[u]]
            last_held.append(([hub, *held[users[-1]]], held[users[-1]][own:]))
    for j, u in enumerate(fillers):
        for _ in range(4 + n_pad // n_fill + (j < n_pad % n_fill)):
            entries.append((u, n_items, 1.0))
            n_items += 1
    perm = rng.permutation(n_items)  # column j of the result is item perm[j]
    if untied_last:
        pos = np.argsort(perm)
        for items, fill in last_held:
            a, b = max(items, key=lambda i: pos[i]), fill[0]
            pos[a], pos[b] = pos[b], pos[a]
        perm = np.argsort(pos)
    return _assemble(entries, user, n_items, dtype, perm_items=perm)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_dense_weights_is_the_documented_formula():
    X = single_user_matrix(5, "int", np.float64, dense_user=0.3)
    for method in METHODS:
        np.testing.assert_allclose(dense_weights(X, method), ref_weights(X, method), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["int", "near"])
@pytest.mark.parametrize("top_n", [3, 5, 8, 20])
def test_single_user_items(top_n, kind, method, dtype):
    seed = near_seed(top_n, dtype) if kind == "near" else 0
    X, ref = get(single_user_matrix, (top_n, kind, dtype, seed), method)
    stats = run_all(X, ref, top_n)
    # the data reach what they were built for
    assert stats["single_user_cut"] > 0
    assert stats["self_top"] > 0 and stats["self_next"] > 0 and stats["self_below"] > 0
    if kind == "int":
        assert stats["single_user_tie_cut"] > 0 and stats["self_cut"] > 0
    if method == "cosine":  # a single-user item's own cosine weight is exactly 1
        i = np.flatnonzero(ref.single)
        assert np.all(ref.W[:, i][X[:, i] != 0] == 1)
    elif kind == "near":
        # distinct weights 1 ulp apart, and distinct weights whose products with the item's
        # weight round to the same float: ties that exist only after the multiplication
        adjacent = collide = 0
        for i in np.flatnonzero(ref.single):
            (u,) = ref.users_of[i]
            b = np.unique(ref.W[u, ref.items_of[u]])
            adjacent += int(np.sum(np.nextafter(b[:-1], np.inf) == b[1:]))
            collide += b.size - np.unique(ref.W[u, i] * b).size
        assert adjacent > 0 and collide > 0
        assert min(cut_collisions(X, top_n)) > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("top_n", [3, 8])
def test_long_rows_with_many_ties(top_n, method, dtype):
    X, ref = get(hub_matrix, (top_n, dtype), method)
    stats = run_all(X, ref, top_n)
    assert stats["long_unordered_tie"] > 0
    assert stats["long_ordered_tie"] > 0
    assert stats["tie_cut_over_cap"] > 0
    assert stats["short_unordered_tie"] + stats["single_user_tie_cut"] > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("top_n", [3, 8])
def test_ties_around_the_buffer_size(top_n, method, dtype):
    X, ref = get(tie_count_matrix, (top_n, dtype), method)
    stats = run_all(X, ref, top_n)
    for off in (-2, -1, 0, 1, 2):
        assert stats[f"long_unordered_ties_cap{off:+d}"] > 0, (off, stats)
    assert stats["tie_cut_over_cap"] > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_ties_filling_a_large_buffer(method, dtype):
    """Exactly ``cap`` ties (and cap -/+ 1) on long scattered rows, one thread, top_n 300.

    The cut gathers the tied merchants into the candidate buffer, writing one entry past the
    last tie for each later candidate, so ``cap`` ties gathered write one index past the
    buffer.  Here that write leaves the allocation, where AddressSanitizer sees it: with
    n_threads=1 the workspace holds one row (with two, the write lands in the next thread's
    row), and 616 indices are a block of their own from malloc (NumPy serves blocks under
    1 KiB from its cache).  The last candidate of each hub scores below the tie.
    """
    top_n = 300
    cap = 2 * top_n + 16
    assert cap * np.dtype(np.int32).itemsize > 2048
    X, ref = get(tie_count_matrix, (top_n, dtype, 0, (-1, 0, 1), (0,), 500, True), method)
    assert not ref.dense.any()
    stats = run_all(X, ref, top_n)  # n_threads 1, then 2
    for off in (-1, 0, 1):
        assert stats[f"long_unordered_ties_cap{off:+d}"] > 0, (off, stats)
    assert stats["long_unordered_ties_cap+0_untied_last"] > 0, stats


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("variant", ["quarter", "all"])
@pytest.mark.parametrize("top_n", [3, 20])
def test_dense_rows_mixed_in(top_n, variant, method, dtype):
    kw = (0.3, False) if variant == "quarter" else (0.0, True)
    X, ref = get(single_user_matrix, (top_n, "int", dtype, 1, *kw), method)
    if method == "bm25" and variant == "all":
        assert ref.W.min() < 0  # the weights are not all positive: the general path
    stats = run_all(X, ref, top_n)
    assert stats["dense_cut"] > 0 and stats["dense_tie"] > 0
    if variant == "quarter":
        assert stats["single_user_tie_cut"] > 0


@settings(max_examples=60)
@given(
    top_n=st.integers(1, 8),
    kind=st.sampled_from(["int", "near"]),
    dense=st.sampled_from([0.0, 0.0, 0.3, 0.6]),
    all_user=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_mixtures(top_n, kind, dense, all_user, dtype, method, seed):
    X = single_user_matrix(top_n, kind, dtype, seed, dense, all_user)
    ref = Ref(X, method)
    run_all(X, ref, top_n)


def _with_row(s: sp.csr_array, i: int, idx: np.ndarray, val: np.ndarray) -> sp.csr_array:
    """``s`` with row ``i`` replaced."""
    lo, hi = s.indptr[i], s.indptr[i + 1]
    indices = np.concatenate([s.indices[:lo], idx, s.indices[hi:]]).astype(s.indices.dtype)
    data = np.concatenate([s.data[:lo], val, s.data[hi:]]).astype(s.dtype)
    indptr = s.indptr.copy()
    indptr[i + 1 :] += idx.size - (hi - lo)
    out = sp.csr_array((data, indices, indptr), shape=s.shape)
    out.has_sorted_indices = True
    return out


@pytest.mark.parametrize("method", METHODS)
def test_checker_catches_wrong_answers(method):
    """``Ref.check`` rejects a wrong tie choice, a score 1 ulp off and a missing entry."""
    top_n = 3
    X, ref = get(hub_matrix, (top_n, np.float32), method)
    got = item_similarity(sp.csr_array(X), method=method, top_n=top_n)
    ref.check(got, top_n, False)
    S = ref.S
    swapped = 0
    for i in np.flatnonzero(~ref.single & ref.unordered)[:20]:
        idx = got.indices[got.indptr[i] : got.indptr[i + 1]]
        kth = S[i, idx].min()
        kept = idx[S[i, idx] == kth]
        out = np.flatnonzero(ref.cand[i] & (S[i] == kth))
        out = out[(out != i) & ~np.isin(out, idx)]
        if kept.size == 0 or out.size == 0:
            continue
        new = np.sort(np.append(idx[idx != kept.max()], out.min()))
        with pytest.raises(AssertionError, match="same products"):
            ref.check(_with_row(got, int(i), new, S[i, new]), top_n, False)
        swapped += 1
    assert swapped > 0
    i = int(np.flatnonzero(ref.single & (np.diff(got.indptr) > 0))[0])
    idx = got.indices[got.indptr[i] : got.indptr[i + 1]]
    val = got.data[got.indptr[i] : got.indptr[i + 1]].copy()
    val[0] = np.nextafter(val[0], np.float32(np.inf))
    with pytest.raises(AssertionError, match="scores differ"):
        ref.check(_with_row(got, i, idx, val), top_n, False)
    with pytest.raises(AssertionError, match="entries, expected"):
        ref.check(_with_row(got, i, idx[1:], got.data[got.indptr[i] + 1 : got.indptr[i + 1]]), top_n, False)
