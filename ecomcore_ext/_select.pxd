# Top-k selection on (score, index) pairs: introselect and sort, no allocation, no GIL.
#
# Order: (s, i) is *better* than (t, j) when s > t, or s == t and i < j (ties go to the lower
# index).  Indices are distinct, so this is a strict total order and partitioning always
# terminates.  Quickselect uses a median-of-three pivot; past a depth limit it falls back to a
# heap sort of the remaining range, so adversarial inputs cost O(n log n), never O(n^2).
from libc.string cimport memcpy

from ecomcore_ext._types cimport floating, index_t
from ecomcore_ext._heap cimport heap_worse, heap_push, heap_sort_best_first


cdef inline bint better(floating sa, index_t ia, floating sb, index_t ib) noexcept nogil:
    # bitwise, not short-circuit: compiles to flag arithmetic instead of branches
    return (sa > sb) | ((sa == sb) & (ia < ib))


cdef inline void swap_pairs(floating* s, index_t* x, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef floating ts = s[a]
    cdef index_t tx = x[a]
    s[a] = s[b]
    x[a] = x[b]
    s[b] = ts
    x[b] = tx


cdef inline void insertion_sort_best_first(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating vs
    cdef index_t vx
    for i in range(1, n):
        vs = s[i]
        vx = x[i]
        j = i
        while j > 0 and better(vs, vx, s[j - 1], x[j - 1]):
            s[j] = s[j - 1]
            x[j] = x[j - 1]
            j -= 1
        s[j] = vs
        x[j] = vx


cdef inline void heap_sort_range(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` pairs best first in O(n log n) (worst-at-root heap, then extraction)."""
    cdef Py_ssize_t i
    for i in range(n):
        heap_push(s, x, i, s[i], x[i])
    heap_sort_best_first(s, x, n)


cdef inline Py_ssize_t _partition(floating* s, index_t* x, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Partition [lo, hi] around a median-of-three pivot; return the pivot's final position.

    Afterwards every pair left of it is better than the pivot and every pair right of it worse.
    """
    cdef Py_ssize_t mid = lo + (hi - lo) // 2, i, store
    # order lo, mid, hi so that s[mid] is the median of the three, then park it at hi
    if better(s[mid], x[mid], s[lo], x[lo]):
        swap_pairs(s, x, mid, lo)
    if better(s[hi], x[hi], s[lo], x[lo]):
        swap_pairs(s, x, hi, lo)
    if better(s[hi], x[hi], s[mid], x[mid]):
        swap_pairs(s, x, hi, mid)
    swap_pairs(s, x, mid, hi)
    cdef floating ps = s[hi]
    cdef index_t px = x[hi]
    cdef floating ts
    cdef index_t tx
    store = lo
    # Branch-free Lomuto: always swap i with store and advance store when the element was
    # better than the pivot (when it was not, both swapped elements are worse, so the
    # invariant holds).  Comparisons against a pivot are unpredictable; a branch here would
    # mispredict about half the time.
    for i in range(lo, hi):
        ts = s[i]
        tx = x[i]
        s[i] = s[store]
        x[i] = x[store]
        s[store] = ts
        x[store] = tx
        store += better(ts, tx, ps, px)
    swap_pairs(s, x, store, hi)
    return store


cdef inline int depth_limit(Py_ssize_t n) noexcept nogil:
    """Partition depth past which the quick algorithms fall back to a heap: 2 + 2 log2(n)."""
    cdef int limit = 2
    while n > 1:
        limit += 2
        n >>= 1
    return limit


cdef inline void select_best(floating* s, index_t* x, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Reorder so that the best ``k`` of ``n`` pairs come first, the k-th best at ``k - 1``."""
    cdef Py_ssize_t lo = 0, hi = n - 1, p, depth = 0, limit = depth_limit(n)
    if k <= 0 or k >= n:
        return
    while hi > lo:
        if hi - lo < 16 or depth > limit:
            if hi - lo < 16:
                insertion_sort_best_first(s + lo, x + lo, hi - lo + 1)
            else:
                heap_sort_range(s + lo, x + lo, hi - lo + 1)
            return
        p = _partition(s, x, lo, hi)
        depth += 1
        if p == k - 1:
            return
        elif p < k - 1:
            lo = p + 1
        else:
            hi = p - 1


cdef inline void _quicksort(floating* s, index_t* x, Py_ssize_t lo, Py_ssize_t hi,
                            int depth) noexcept nogil:
    cdef Py_ssize_t p
    while hi - lo >= 16:
        if depth <= 0:
            heap_sort_range(s + lo, x + lo, hi - lo + 1)
            return
        depth -= 1
        p = _partition(s, x, lo, hi)
        # recurse into the smaller side, loop on the larger: O(log n) stack
        if p - lo < hi - p:
            _quicksort(s, x, lo, p - 1, depth)
            lo = p + 1
        else:
            _quicksort(s, x, p + 1, hi, depth)
            hi = p - 1
    if hi > lo:
        insertion_sort_best_first(s + lo, x + lo, hi - lo + 1)


cdef inline void sort_best_first(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` pairs best first (introsort: quicksort, heap sort past a depth limit)."""
    _quicksort(s, x, 0, n - 1, depth_limit(n))


# Value-only selection (no indices, no tie order): for the selection bar, where only the value
# of the k-th largest group maximum matters.  Values must not be NaN.

cdef inline void _sift_down_min(floating* s, Py_ssize_t start, Py_ssize_t n) noexcept nogil:
    # min-heap on s[0:n]: the root is the smallest
    cdef Py_ssize_t root = start, child
    cdef floating t
    while 2 * root + 1 < n:
        child = 2 * root + 1
        if child + 1 < n and s[child + 1] < s[child]:
            child += 1
        if s[child] < s[root]:
            t = s[root]
            s[root] = s[child]
            s[child] = t
            root = child
        else:
            return


cdef inline floating _kth_largest_heap(floating* s, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    # O(n log k): keep the k largest in a min-heap at s[0:k]
    cdef Py_ssize_t i
    for i in range(k // 2 - 1, -1, -1):
        _sift_down_min(s, i, k)
    for i in range(k, n):
        if s[i] > s[0]:
            s[0] = s[i]
            _sift_down_min(s, 0, k)
    return s[0]


cdef inline floating kth_largest(floating* s, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Return the ``k``-th largest of ``n`` values (``1 <= k <= n``), reordering ``s``.

    Quickselect with a three-way split (larger | equal | smaller, two branch-free passes; the
    second only when the target is not among the larger values), so that runs of equal
    values, common among scores, end the search instead of degrading it.
    """
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, store, eq_end, mid, depth = 0, limit = depth_limit(n)
    cdef floating ps, ts
    k -= 1  # target position when sorted descending
    while hi > lo:
        if hi - lo < 16:
            # insertion sort descending
            for i in range(lo + 1, hi + 1):
                ts = s[i]
                j = i
                while j > lo and ts > s[j - 1]:
                    s[j] = s[j - 1]
                    j -= 1
                s[j] = ts
            return s[k]
        if depth > limit:
            return _kth_largest_heap(s + lo, hi - lo + 1, k - lo + 1)
        depth += 1
        mid = lo + (hi - lo) // 2
        # median of three as the pivot value
        ps = s[mid]
        if (s[lo] > ps) == (s[hi] > ps):  # s[mid] is not between the other two
            ps = s[hi] if (s[lo] > ps) == (s[lo] > s[hi]) else s[lo]
        store = lo
        for i in range(lo, hi + 1):  # larger values to the left
            ts = s[i]
            s[i] = s[store]
            s[store] = ts
            store += ts > ps
        if k < store:  # the target is among the larger values: no need to split the rest
            hi = store - 1
            continue
        eq_end = store
        for i in range(store, hi + 1):  # then the values equal to the pivot
            ts = s[i]
            s[i] = s[eq_end]
            s[eq_end] = ts
            eq_end += ts == ps
        if k < eq_end:
            return ps
        lo = eq_end
    return s[k]


# Ordering by index alone (indices distinct): for rows written in column order.

cdef inline void _sift_down_idx(floating* s, index_t* x, Py_ssize_t root, Py_ssize_t n) noexcept nogil:
    # max-heap on x[0:n]
    cdef Py_ssize_t child
    cdef floating ts
    cdef index_t tx
    while 2 * root + 1 < n:
        child = 2 * root + 1
        if child + 1 < n and x[child + 1] > x[child]:
            child += 1
        if x[child] > x[root]:
            swap_pairs(s, x, root, child)
            root = child
        else:
            return


cdef inline void _heap_sort_idx(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n // 2 - 1, -1, -1):
        _sift_down_idx(s, x, i, n)
    for i in range(n - 1, 0, -1):
        swap_pairs(s, x, 0, i)
        _sift_down_idx(s, x, 0, i)


cdef inline void _insertion_sort_idx(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating vs
    cdef index_t vx
    for i in range(1, n):
        vs = s[i]
        vx = x[i]
        j = i
        while j > 0 and x[j - 1] > vx:
            s[j] = s[j - 1]
            x[j] = x[j - 1]
            j -= 1
        s[j] = vs
        x[j] = vx


cdef inline void _quicksort_idx(floating* s, index_t* x, Py_ssize_t lo, Py_ssize_t hi,
                                int depth) noexcept nogil:
    cdef Py_ssize_t mid, i, store
    cdef index_t px, tx
    cdef floating ts
    while hi - lo >= 16:
        if depth <= 0:
            _heap_sort_idx(s + lo, x + lo, hi - lo + 1)
            return
        depth -= 1
        mid = lo + (hi - lo) // 2
        # median of three parked at hi
        if x[mid] < x[lo]:
            swap_pairs(s, x, mid, lo)
        if x[hi] < x[lo]:
            swap_pairs(s, x, hi, lo)
        if x[hi] < x[mid]:
            swap_pairs(s, x, hi, mid)
        swap_pairs(s, x, mid, hi)
        px = x[hi]
        store = lo
        for i in range(lo, hi):  # branch-free Lomuto: smaller indices to the left
            ts = s[i]
            tx = x[i]
            s[i] = s[store]
            x[i] = x[store]
            s[store] = ts
            x[store] = tx
            store += tx < px
        swap_pairs(s, x, store, hi)
        if store - lo < hi - store:
            _quicksort_idx(s, x, lo, store - 1, depth)
            lo = store + 1
        else:
            _quicksort_idx(s, x, store + 1, hi, depth)
            hi = store - 1
    if hi > lo:
        _insertion_sort_idx(s + lo, x + lo, hi - lo + 1)


cdef inline void sort_by_index(floating* s, index_t* x, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` pairs by ascending index (indices distinct; introsort)."""
    _quicksort_idx(s, x, 0, n - 1, depth_limit(n))


cdef inline Py_ssize_t _run_end(const index_t* x, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """End of the ascending run of indices starting at ``i``."""
    i += 1
    while i < n and x[i - 1] < x[i]:
        i += 1
    return i


cdef inline void merge_sort_by_index(floating* s, index_t* x, Py_ssize_t n, floating* ts,
                                     index_t* tx) noexcept nogil:
    """Sort ``n`` pairs by ascending index (indices distinct), using ``ts``/``tx`` (>= n).

    A natural merge sort: each pass merges neighbouring ascending runs pairwise, so a
    sequence made of r runs (e.g. the candidates of a row reached through r users, each
    user's items in ascending order) costs about n * log2(r) moves; one run costs one scan.
    The merge is branch-free (which side goes next is unpredictable).
    """
    cdef floating* src_s = s
    cdef index_t* src_i = x
    cdef floating* dst_s = ts
    cdef index_t* dst_i = tx
    cdef floating* sw_s
    cdef index_t* sw_i
    cdef Py_ssize_t i, a, b, m, e, k, runs
    cdef bint take_b
    if n < 2 or _run_end(x, 0, n) == n:
        return
    while True:
        runs = 0
        i = 0
        while i < n:
            runs += 1
            m = _run_end(src_i, i, n)
            if m == n:
                memcpy(dst_s + i, src_s + i, (n - i) * sizeof(floating))
                memcpy(dst_i + i, src_i + i, (n - i) * sizeof(index_t))
                break
            e = _run_end(src_i, m, n)
            a = i
            b = m
            k = i
            while a < m and b < e:
                take_b = src_i[b] < src_i[a]
                dst_s[k] = src_s[b] if take_b else src_s[a]
                dst_i[k] = src_i[b] if take_b else src_i[a]
                b += take_b
                a += 1 - take_b
                k += 1
            if a < m:
                memcpy(dst_s + k, src_s + a, (m - a) * sizeof(floating))
                memcpy(dst_i + k, src_i + a, (m - a) * sizeof(index_t))
            elif b < e:
                memcpy(dst_s + k, src_s + b, (e - b) * sizeof(floating))
                memcpy(dst_i + k, src_i + b, (e - b) * sizeof(index_t))
            i = e
        sw_s = src_s
        sw_i = src_i
        src_s = dst_s
        src_i = dst_i
        dst_s = sw_s
        dst_i = sw_i
        if runs == 1:
            break
    if src_s != s:
        memcpy(s, src_s, n * sizeof(floating))
        memcpy(x, src_i, n * sizeof(index_t))
