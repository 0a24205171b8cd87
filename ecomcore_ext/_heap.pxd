# Bounded "worst-at-root" heap used for top-k selection.
#
# Order: an entry (s, i) is *better* than (t, j) when s > t, or s == t and i < j (ties go to the
# lower index).  The root is the worst entry kept, so a candidate only needs one comparison with
# the root to be rejected.  All helpers work on raw pointers, hold no GIL and allocate nothing.
from ecomcore_ext._types cimport floating, index_t


cdef inline bint heap_worse(floating sa, index_t ia, floating sb, index_t ib) noexcept nogil:
    """True when entry a ranks below entry b."""
    return sa < sb or (sa == sb and ia > ib)


cdef inline void heap_push(floating* hs, index_t* hi, Py_ssize_t size,
                           floating s, index_t i) noexcept nogil:
    """Insert (s, i) into a heap currently holding ``size`` entries."""
    cdef Py_ssize_t pos = size, parent
    while pos > 0:
        parent = (pos - 1) >> 1
        if heap_worse(s, i, hs[parent], hi[parent]):
            hs[pos] = hs[parent]
            hi[pos] = hi[parent]
            pos = parent
        else:
            break
    hs[pos] = s
    hi[pos] = i


cdef inline void heap_sift_down(floating* hs, index_t* hi, Py_ssize_t size,
                                floating s, index_t i) noexcept nogil:
    """Put (s, i) at the root of a heap of ``size`` entries and restore the heap order."""
    cdef Py_ssize_t pos = 0, child
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap_worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if heap_worse(hs[child], hi[child], s, i):
            hs[pos] = hs[child]
            hi[pos] = hi[child]
            pos = child
        else:
            break
    hs[pos] = s
    hi[pos] = i


cdef inline void heap_sort_best_first(floating* hs, index_t* hi, Py_ssize_t size) noexcept nogil:
    """Sort the heap in place, best entry first (descending score, ascending index on ties)."""
    cdef Py_ssize_t end = size - 1
    cdef floating s
    cdef index_t i
    while end > 0:
        s = hs[end]
        i = hi[end]
        hs[end] = hs[0]
        hi[end] = hi[0]
        heap_sift_down(hs, hi, end, s, i)
        end -= 1
