/* tracejit machine-op stencils (contract: docs/backend.md).
 *
 * Each function `op_NAME` becomes the stencil for machine op "NAME";
 * `trace_entry` is the entry stencil with the ordinary C ABI.  build.py
 * compiles this file once with -ffunction-sections and cuts one stencil out
 * of each function's section.  Helpers must be ALWAYS_INLINE: a stencil may
 * not call another function of this file.
 */
#include "stencil.h"

/* ---- entry -------------------------------------------------------------- */

/* int trace_entry(_PyInterpreterFrame *frame, PyThreadState *tstate):
 * OP0 = number of registers (the loader checks it against
 * TRACEJIT_MAX_REGS).  The register file is a VLA on this C stack frame; the
 * op chain is entered with a preserve_none call (clang saves the
 * callee-saved registers of the C ABI around it). */
int
trace_entry(_PyInterpreterFrame *frame, PyThreadState *tstate)
{
    uint64_t nregs = OP(0);
    uint64_t regs[nregs + 1];
    return _JIT_CONTINUE(frame, regs, tstate);
}

/* Index i of a sequence of n items, negative from the end, or -1 when out
 * of range (as the interpreter's list and tuple subscripts check it). */
ALWAYS_INLINE int64_t
seq_index(int64_t i, int64_t n)
{
    if (i < 0) {
        i += n;
    }
    return (uint64_t)i < (uint64_t)n ? i : -1;
}

/* *slot = float(v), releasing the old object: an old exact float that only
 * this slot refers to is updated in place instead (unobservable; CPython's
 * own float ops reuse a dying operand the same way).  -1 if boxing failed. */
ALWAYS_INLINE int
store_float(PyObject **slot, double v)
{
    PyObject *old = *slot;
    if (old != NULL && Py_IS_TYPE(old, &PyFloat_Type) && Py_REFCNT(old) == 1) {
        ((PyFloatObject *)old)->ob_fval = v;
        return 0;
    }
    PyObject *f = PyFloat_FromDouble(v);
    if (f == NULL) {
        return -1;
    }
    *slot = f;
    Py_XDECREF(old);
    return 0;
}

/* *slot = int(v), releasing the old object: an old exact int that only this
 * slot refers to, with one 30-bit digit, is updated in place when v has one
 * digit too and is not one of the cached small ints (-5..256, which must stay
 * the cached objects); else a new int replaces it.  -1 if boxing failed. */
ALWAYS_INLINE int
store_int(PyObject **slot, int64_t v)
{
    PyObject *old = *slot;
    if (old != NULL && Py_IS_TYPE(old, &PyLong_Type) && Py_REFCNT(old) == 1
        && _PyLong_IsCompact((PyLongObject *)old)
        && _PyLong_DigitCount((PyLongObject *)old) == 1
        && v > -(int64_t)PyLong_BASE && v < (int64_t)PyLong_BASE
        && (v < -_PY_NSMALLNEGINTS || v >= _PY_NSMALLPOSINTS)) {
        PyLongObject *o = (PyLongObject *)old;
        o->long_value.ob_digit[0] = (digit)(v < 0 ? -v : v);
        _PyLong_SetSignAndDigitCount(o, v < 0 ? -1 : 1, 1);
        return 0;
    }
    PyObject *n = PyLong_FromLongLong((long long)v);
    if (n == NULL) {
        return -1;
    }
    *slot = n;
    Py_XDECREF(old);
    return 0;
}

/* ---- frame and registers ------------------------------------------------ */

STENCIL(load_slot)
{
    SET_OBJ(0, SLOT(1));
    CONTINUE();
}

/* *ref = v (stolen), releasing the old value (store_local, tj_store_local,
 * store_cell). */
ALWAYS_INLINE void
replace_ref(PyObject **ref, PyObject *v)
{
    PyObject *old = *ref;
    *ref = v;
    Py_XDECREF(old);
}

STENCIL(store_local)
{
    replace_ref(&SLOT(1), R_OBJ(0));
    CONTINUE();
}

/* list.append(list, item), as CPython's CALL_LIST_APPEND: the list takes a
 * new reference to item; -1 if growing it failed (list_append, tj_list_append). */
ALWAYS_INLINE int
list_append(PyListObject *list, PyObject *item)
{
    Py_ssize_t n = Py_SIZE(list);
    Py_INCREF(item);
    if (LIKELY(list->allocated > n)) {
        list->ob_item[n] = item;
        Py_SET_SIZE(list, n + 1);
        return 0;
    }
    return _PyList_AppendTakeRefListResize(list, item);
}

/* ---- out-of-line forms ----------------------------------------------------
 *
 * The traces of a huge function (a compiled template) run once per call:
 * their machine code is fetched from memory more often than it is executed
 * twice, so their most common ops call one shared runtime function instead
 * of carrying its code inline (a third of the bytes).  The stencils call
 * them through the GOT by the name tjrt_NAME, which the loader resolves to
 * the runtime function tj_NAME (a stencil may not call this file's
 * functions directly). */
extern void tjrt_decref(PyObject *o);
extern void tjrt_store_local(PyObject **slot, PyObject *v);
extern int tjrt_list_append(PyListObject *list, PyObject *item);
extern PyObject *tjrt_str_replace_chain(PyObject *s, const uint64_t *pairs);

/* Py_DECREF(o) (decref_out). */
void
tj_decref(PyObject *o)
{
    Py_DECREF(o);
}

/* *slot = v, releasing the old value (store_local_out; steals v). */
void
tj_store_local(PyObject **slot, PyObject *v)
{
    replace_ref(slot, v);
}

/* list_append as a runtime function (list_append_out). */
int
tj_list_append(PyListObject *list, PyObject *item)
{
    return list_append(list, item);
}

/* str.replace(s, old, new) for an exact str s and exact strs old and new:
 * s itself when old is one character that does not occur in s (what
 * str.replace returns then), else PyUnicode_Replace, which str.replace
 * calls.  Skips the method's argument parsing and the generic replace's
 * set-up (html.escape's replaces of short text with nothing to escape). */
ALWAYS_INLINE PyObject *
replace_str(PyObject *s, PyObject *old, PyObject *new)
{
    if (PyUnicode_GET_LENGTH(old) == 1) {
        Py_UCS4 ch = PyUnicode_READ_CHAR(old, 0);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        Py_ssize_t at = -1;
        if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) {
            /* a plain loop: the text is short, a call to memchr costs more */
            const Py_UCS1 *data = PyUnicode_1BYTE_DATA(s);
            for (Py_ssize_t i = 0; ch <= 0xff && i < n; i++) {
                if (data[i] == ch) {
                    at = i;
                    break;
                }
            }
        }
        else {
            at = PyUnicode_FindChar(s, ch, 0, n, 1);
        }
        if (at == -1) {
            return Py_NewRef(s);
        }
    }
    return PyUnicode_Replace(s, old, new, -1);
}

/* replace_str with the calling convention of a METH_FASTCALL|METH_KEYWORDS
 * method (a `meth` of call_meth_fastkw_c): s.replace(args[0], args[1]). */
PyObject *
tj_str_replace(PyObject *s, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    return replace_str(s, args[0], args[1]);
}

/* str_replace_chain: s.replace(old1, new1).replace(old2, new2)... with
 * `pairs` = {n, old1, new1, ...}; NULL, with no exception set, if a step
 * failed (the trace leaves before the first replace and the interpreter runs
 * them again: they have no effect but their result). */
PyObject *
tj_str_replace_chain(PyObject *s, const uint64_t *pairs)
{
    PyObject *cur = Py_NewRef(s);
    for (uint64_t i = 0; i < pairs[0]; i++) {
        PyObject *next = replace_str(cur, (PyObject *)(uintptr_t)pairs[1 + 2 * i],
                                     (PyObject *)(uintptr_t)pairs[2 + 2 * i]);
        Py_DECREF(cur);
        if (next == NULL) {
            PyErr_Clear();
            return NULL;
        }
        cur = next;
    }
    return cur;
}

/* decref R0 through tj_decref. */
STENCIL(decref_out)
{
    tjrt_decref(R_OBJ(0));
    CONTINUE();
}

/* R0 = tj_str_replace_chain(R1, pairs at OP2); exit (before the chain's
 * first replace) if it failed. */
STENCIL(str_replace_chain)
{
    PyObject *r = tjrt_str_replace_chain(R_OBJ(1), (const uint64_t *)(uintptr_t)OP(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    EXIT();
}

/* list_append through tj_list_append. */
STENCIL(list_append_out)
{
    if (tjrt_list_append((PyListObject *)R_OBJ(0), R_OBJ(1)) == 0) {
        CONTINUE();
    }
    ERROR();
}

/* store_local through tj_store_local. */
STENCIL(store_local_out)
{
    tjrt_store_local(&SLOT(1), R_OBJ(0));
    CONTINUE();
}

/* Write an unboxed float into a frame slot (exit stubs; see store_float). */
STENCIL(store_local_float)
{
    if (store_float(&SLOT(1), R_F64(0)) == 0) {
        CONTINUE();
    }
    ERROR();
}

/* Write an unboxed int into a frame slot (exit stubs; see store_int). */
STENCIL(store_local_int)
{
    if (store_int(&SLOT(1), R_I64(0)) == 0) {
        CONTINUE();
    }
    ERROR();
}

STENCIL(store_slot_raw)
{
    SLOT(1) = R_OBJ(0);
    CONTINUE();
}

STENCIL(const)
{
    R(0) = OP(1);
    CONTINUE();
}

STENCIL(copy)
{
    R(0) = R(1);
    CONTINUE();
}

STENCIL(incref)
{
    Py_INCREF(R_OBJ(0));
    CONTINUE();
}

STENCIL(decref)
{
    Py_DECREF(R_OBJ(0));
    CONTINUE();
}

STENCIL(xdecref)
{
    Py_XDECREF(R_OBJ(0));
    CONTINUE();
}

/* ---- guards ------------------------------------------------------------- */

/* NULL (an unbound local: a trace may be entered from another trace's exit,
 * before a loop variable is first bound) fails the guard. */
STENCIL(guard_type)
{
    PyObject *o = R_OBJ(0);
    if (o != NULL && Py_TYPE(o) == (PyTypeObject *)(uintptr_t)OP(1)) {
        CONTINUE();
    }
    EXIT();
}

STENCIL(guard_is)
{
    if (R(0) == OP(1)) {
        CONTINUE();
    }
    EXIT();
}

STENCIL(guard_is_not)
{
    if (R(0) != OP(1)) {
        CONTINUE();
    }
    EXIT();
}

STENCIL(guard_true)
{
    if (R(0) != 0) {
        CONTINUE();
    }
    EXIT();
}

STENCIL(guard_false)
{
    if (R(0) == 0) {
        CONTINUE();
    }
    EXIT();
}

/* Exit unless the exact dict R0's key table is of a str-only kind (unicode or
 * split): a lookup by an int, float or str key then compares it with str keys
 * only; a general table may hold a key whose __eq__ is Python code. */
STENCIL(guard_dict_str_keys)
{
    if (((PyDictObject *)R_OBJ(0))->ma_keys->dk_kind != DICT_KEYS_GENERAL) {
        CONTINUE();
    }
    EXIT();
}

/* Exit unless Py_SIZE(R0) == OP1 (an object proven an exact list or tuple):
 * ob_size, int_eq and guard_true in one. */
STENCIL(guard_size)
{
    if ((uint64_t)Py_SIZE(R_OBJ(0)) == OP(1)) {
        CONTINUE();
    }
    EXIT();
}

/* guard_type (type OP2, an exact float type) and unbox_float in one:
 * exit unless R1 is non-NULL of that type, then R0 = its double. */
STENCIL(guard_unbox_float)
{
    PyObject *o = R_OBJ(1);
    if (o != NULL && Py_TYPE(o) == (PyTypeObject *)(uintptr_t)OP(2)) {
        SET_F64(0, PyFloat_AS_DOUBLE(o));
        CONTINUE();
    }
    EXIT();
}

/* ---- boxing ------------------------------------------------------------- */

STENCIL(unbox_int)
{
    PyLongObject *v = (PyLongObject *)R_OBJ(1);
    if (_PyLong_IsCompact(v)) {
        SET_I64(0, _PyLong_CompactValue(v));
        CONTINUE();
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow((PyObject *)v, &overflow);
    if (UNLIKELY(overflow)) {
        EXIT();
    }
    if (x != -1 || !_PyErr_Occurred(tstate)) {
        SET_I64(0, x);
        CONTINUE();
    }
    ERROR();
}

STENCIL(box_int)
{
    PyObject *v = PyLong_FromLongLong((long long)R_I64(1));
    if (v != NULL) {
        SET_OBJ(0, v);
        CONTINUE();
    }
    ERROR();
}

STENCIL(unbox_float)
{
    SET_F64(0, PyFloat_AS_DOUBLE(R_OBJ(1)));
    CONTINUE();
}

STENCIL(box_float)
{
    PyObject *v = PyFloat_FromDouble(R_F64(1));
    if (v != NULL) {
        SET_OBJ(0, v);
        CONTINUE();
    }
    ERROR();
}

STENCIL(box_bool)
{
    SET_OBJ(0, R(1) ? Py_True : Py_False);
    CONTINUE();
}

STENCIL(is_true)
{
    int r = PyObject_IsTrue(R_OBJ(1));
    if (r >= 0) {
        SET_I64(0, r);
        CONTINUE();
    }
    ERROR();
}

/* ---- int64 arithmetic --------------------------------------------------- */

STENCIL(int_add)
{
    int64_t r;
    if (!__builtin_add_overflow(R_I64(1), R_I64(2), &r)) {
        SET_I64(0, r);
        CONTINUE();
    }
    EXIT();
}

STENCIL(int_sub)
{
    int64_t r;
    if (!__builtin_sub_overflow(R_I64(1), R_I64(2), &r)) {
        SET_I64(0, r);
        CONTINUE();
    }
    EXIT();
}

STENCIL(int_mul)
{
    int64_t r;
    if (!__builtin_mul_overflow(R_I64(1), R_I64(2), &r)) {
        SET_I64(0, r);
        CONTINUE();
    }
    EXIT();
}

STENCIL(int_floordiv)
{
    int64_t a = R_I64(1), b = R_I64(2);
    if (UNLIKELY(b == 0 || (b == -1 && a == INT64_MIN))) {
        EXIT();
    }
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q -= 1;
    }
    SET_I64(0, q);
    CONTINUE();
}

STENCIL(int_mod)
{
    int64_t a = R_I64(1), b = R_I64(2);
    if (UNLIKELY(b == 0)) {
        EXIT();
    }
    int64_t r;
    if (b == -1) {
        r = 0;  /* also avoids the INT64_MIN % -1 trap */
    }
    else {
        r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) {
            r += b;
        }
    }
    SET_I64(0, r);
    CONTINUE();
}

STENCIL(int_and)
{
    R(0) = R(1) & R(2);
    CONTINUE();
}

STENCIL(int_or)
{
    R(0) = R(1) | R(2);
    CONTINUE();
}

STENCIL(int_xor)
{
    R(0) = R(1) ^ R(2);
    CONTINUE();
}

STENCIL(int_lshift)
{
    int64_t a = R_I64(1), b = R_I64(2);
    if (UNLIKELY(b < 0)) {
        EXIT();
    }
    if (b >= 64) {
        if (UNLIKELY(a != 0)) {
            EXIT();
        }
        SET_I64(0, 0);
        CONTINUE();
    }
    int64_t r = (int64_t)((uint64_t)a << b);
    if ((r >> b) == a) {
        SET_I64(0, r);
        CONTINUE();
    }
    EXIT();
}

STENCIL(int_rshift)
{
    int64_t a = R_I64(1), b = R_I64(2);
    if (UNLIKELY(b < 0)) {
        EXIT();
    }
    if (b > 63) {
        b = 63;  /* Python: the sign fills every bit */
    }
    SET_I64(0, a >> b);
    CONTINUE();
}

STENCIL(int_neg)
{
    int64_t a = R_I64(1);
    if (a != INT64_MIN) {
        SET_I64(0, -a);
        CONTINUE();
    }
    EXIT();
}

#define INT_COMPARE(NAME, OPERATOR) \
    STENCIL(NAME) \
    { \
        SET_I64(0, R_I64(1) OPERATOR R_I64(2)); \
        CONTINUE(); \
    }

INT_COMPARE(int_lt, <)
INT_COMPARE(int_le, <=)
INT_COMPARE(int_eq, ==)
INT_COMPARE(int_ne, !=)
INT_COMPARE(int_gt, >)
INT_COMPARE(int_ge, >=)

/* ---- float (IEEE bits in registers) ------------------------------------- */

#define FLOAT_BINARY(NAME, OPERATOR) \
    STENCIL(NAME) \
    { \
        SET_F64(0, R_F64(1) OPERATOR R_F64(2)); \
        CONTINUE(); \
    }

FLOAT_BINARY(float_add, +)
FLOAT_BINARY(float_sub, -)
FLOAT_BINARY(float_mul, *)

STENCIL(float_div)
{
    double b = R_F64(2);
    if (b != 0.0) {
        SET_F64(0, R_F64(1) / b);
        CONTINUE();
    }
    EXIT();
}

/* a ** b where CPython's float_pow reduces to C pow(): a finite and > 0, b
 * finite, a finite normal (or zero) result (overflow is an OverflowError
 * there).  Any other case exits: the interpreter raises, returns a complex. */
STENCIL(float_pow)
{
    double a = R_F64(1), b = R_F64(2);
    if (a > 0.0 && a <= DBL_MAX && b >= -DBL_MAX && b <= DBL_MAX) {
        double r = pow(a, b);
        /* subnormal results: whether pow set ERANGE (then CPython raises)
         * is libm's business; leave them to the interpreter */
        if ((r >= DBL_MIN && r <= DBL_MAX) || r == 0.0) {
            SET_F64(0, r);
            CONTINUE();
        }
    }
    EXIT();
}

STENCIL(float_neg)
{
    /* flip the sign bit: exactly -x for every double, NaN included */
    R(0) = R(1) ^ ((uint64_t)1 << 63);
    CONTINUE();
}

#define FLOAT_COMPARE(NAME, OPERATOR) \
    STENCIL(NAME) \
    { \
        SET_I64(0, R_F64(1) OPERATOR R_F64(2)); \
        CONTINUE(); \
    }

FLOAT_COMPARE(float_lt, <)
FLOAT_COMPARE(float_le, <=)
FLOAT_COMPARE(float_eq, ==)
FLOAT_COMPARE(float_ne, !=)
FLOAT_COMPARE(float_gt, >)
FLOAT_COMPARE(float_ge, >=)

/* cvtsi2sd only writes the low half of its xmm destination, so it waits for
 * the register's previous value: across stencils that false dependency chains
 * every loop iteration to the one before (a 4x slowdown measured on a float
 * loop).  Zeroing the register first breaks it, as compilers do within one
 * function. */
STENCIL(int_to_float)
{
    double d;
    __asm__("xorps %0, %0\n\tcvtsi2sdq %1, %0" : "=&x"(d) : "r"(R_I64(1)));
    SET_F64(0, d);
    CONTINUE();
}

/* ---- generic object operations ------------------------------------------ */

typedef PyObject *(*unaryfn)(PyObject *);
typedef PyObject *(*binaryfn)(PyObject *, PyObject *);

STENCIL(call_unary)
{
    PyObject *r = ((unaryfn)(uintptr_t)OP_OPAQUE(2))(R_OBJ(1));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(call_binary)
{
    PyObject *r = ((binaryfn)(uintptr_t)OP_OPAQUE(3))(R_OBJ(1), R_OBJ(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(richcompare)
{
    PyObject *r = PyObject_RichCompare(R_OBJ(1), R_OBJ(2), (int)OP(3));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(getattr)
{
    PyObject *r = PyObject_GetAttr(R_OBJ(1), (PyObject *)(uintptr_t)OP(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(setattr)
{
    if (PyObject_SetAttr(R_OBJ(0), (PyObject *)(uintptr_t)OP(1), R_OBJ(2)) >= 0) {
        CONTINUE();
    }
    ERROR();
}

STENCIL(setitem)
{
    if (PyObject_SetItem(R_OBJ(0), R_OBJ(1), R_OBJ(2)) >= 0) {
        CONTINUE();
    }
    ERROR();
}

STENCIL(call_vector)
{
    uint64_t *base = &R(1);
    PyObject *r = vectorcall_tstate(
        tstate, (PyObject *)(uintptr_t)base[0], (PyObject *const *)&base[1],
        (size_t)OP(2) | PY_VECTORCALL_ARGUMENTS_OFFSET);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* A new container's items: new references to the n objects in a block of
 * registers (the trace releases its own afterwards). */
ALWAYS_INLINE void
fill_new_refs(PyObject **items, const uint64_t *block, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        items[i] = Py_NewRef((PyObject *)(uintptr_t)block[i]);
    }
}

/* BUILD_TUPLE: R0 = a new tuple of the OP2 objects in the block at R1. */
STENCIL(build_tuple)
{
    PyObject *t = PyTuple_New((Py_ssize_t)OP(2));
    if (t != NULL) {
        fill_new_refs(((PyTupleObject *)t)->ob_item, &R(1), (Py_ssize_t)OP(2));
        SET_OBJ(0, t);
        CONTINUE();
    }
    ERROR();
}

/* BUILD_LIST: R0 = a new list of the OP2 objects in the block at R1. */
STENCIL(build_list)
{
    PyObject *l = PyList_New((Py_ssize_t)OP(2));
    if (l != NULL) {
        fill_new_refs(((PyListObject *)l)->ob_item, &R(1), (Py_ssize_t)OP(2));
        SET_OBJ(0, l);
        CONTINUE();
    }
    ERROR();
}

/* LIST_EXTEND of an exact list or tuple: R0.extend(R1). */
STENCIL(list_extend)
{
    PyObject *none = _PyList_Extend((PyListObject *)R_OBJ(0), R_OBJ(1));
    if (none != NULL) {
        Py_DECREF(none); /* None: immortal, nothing runs */
        CONTINUE();
    }
    ERROR();
}

/* BINARY_SLICE: R0 = R1[R2:R3]. */
STENCIL(get_slice)
{
    PyObject *slice = PySlice_New(R_OBJ(2), R_OBJ(3), NULL);
    if (slice != NULL) {
        PyObject *r = PyObject_GetItem(R_OBJ(1), slice);
        Py_DECREF(slice);
        if (r != NULL) {
            SET_OBJ(0, r);
            CONTINUE();
        }
    }
    ERROR();
}

/* BUILD_STRING: R0 = the OP2 strs in the block at R1 joined (OP3: ""). */
STENCIL(build_string)
{
    PyObject *r = _PyUnicode_JoinArray((PyObject *)(uintptr_t)OP(3),
                                       (PyObject *const *)&R(1), (Py_ssize_t)OP(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* BUILD_CONST_KEY_MAP: R0 = a dict of the OP2 values in the block at R1 under
 * the keys of the tuple OP3. */
STENCIL(build_const_key_map)
{
    PyObject *r = _PyDict_FromItems(
        &((PyTupleObject *)(uintptr_t)OP(3))->ob_item[0], 1,
        (PyObject *const *)&R(1), 1, (Py_ssize_t)OP(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* CONTAINS_OP: R0 = (R1 in R2) ^ OP3, as 0/1. */
STENCIL(contains)
{
    int r = PySequence_Contains(R_OBJ(2), R_OBJ(1));
    if (r >= 0) {
        SET_I64(0, r ^ (int)OP(3));
        CONTINUE();
    }
    ERROR();
}

/* CALL_KW: R0 = PyObject_Vectorcall(R[base], &regs[base+1], nargs | OFFSET,
 * kwnames): OP2 positional arguments, then one per name of the tuple OP3. */
STENCIL(call_vector_kw)
{
    uint64_t *base = &R(1);
    PyObject *r = PyObject_Vectorcall(
        (PyObject *)(uintptr_t)base[0], (PyObject *const *)&base[1],
        (size_t)OP(2) | PY_VECTORCALL_ARGUMENTS_OFFSET, (PyObject *)(uintptr_t)OP(3));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* A method descriptor's C function called directly, as CPython's
 * CALL_METHOD_DESCRIPTOR_* do: the translator proved self an exact instance
 * of the descriptor's class and the loader read the calling convention and
 * ml_meth (operand 3) from its PyMethodDef.  No vectorcall wrapper, no
 * thread-state lookup, no result check. */
STENCIL(call_meth_o)
{
    /* METH_O checks C recursion like CALL_METHOD_DESCRIPTOR_O. */
    if (UNLIKELY(_Py_EnterRecursiveCallTstate(tstate, " while calling a Python object"))) {
        ERROR();
    }
    PyObject *r = ((PyCFunction)(uintptr_t)OP_OPAQUE(3))(R_OBJ(1), R_OBJ(2));
    _Py_LeaveRecursiveCallTstate(tstate);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* bytes.decode("utf-8") of an exact bytes object: what bytes_decode comes
 * to for that codec (PyUnicode_Decode's utf-8 fast path), without the
 * argument parsing and the codec name's normalization. */
STENCIL(bytes_decode_utf8)
{
    PyObject *b = R_OBJ(1);
    PyObject *r = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), NULL);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(call_meth_noargs)
{
    if (UNLIKELY(_Py_EnterRecursiveCallTstate(tstate, " while calling a Python object"))) {
        ERROR();
    }
    PyObject *r = ((PyCFunction)(uintptr_t)OP_OPAQUE(2))(R_OBJ(1), NULL);
    _Py_LeaveRecursiveCallTstate(tstate);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* Operand 1: self's register, the arguments in the registers after it;
 * operand 2: the number of arguments after self. */
STENCIL(call_meth_fast)
{
    PyObject **base = (PyObject **)&R(1);
    PyObject *r = ((PyCFunctionFast)(uintptr_t)OP_OPAQUE(3))(
        base[0], (PyObject *const *)&base[1], (Py_ssize_t)OP(2));
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(call_meth_fastkw)
{
    PyObject **base = (PyObject **)&R(1);
    PyObject *r = ((PyCFunctionFastWithKeywords)(uintptr_t)OP_OPAQUE(3))(
        base[0], (PyObject *const *)&base[1], (Py_ssize_t)OP(2), NULL);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* The two above with self in R1 and only constant arguments: OP2 is the
 * address of {nargs, arguments...} in the trace's data (a template's
 * s.replace("&", "&amp;"): no registers and no prologue op for them). */
STENCIL(call_meth_fast_c)
{
    const uint64_t *d = (const uint64_t *)(uintptr_t)OP(2);
    PyObject *r = ((PyCFunctionFast)(uintptr_t)OP_OPAQUE(3))(
        R_OBJ(1), (PyObject *const *)&d[1], (Py_ssize_t)d[0]);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

STENCIL(call_meth_fastkw_c)
{
    const uint64_t *d = (const uint64_t *)(uintptr_t)OP(2);
    PyObject *r = ((PyCFunctionFastWithKeywords)(uintptr_t)OP_OPAQUE(3))(
        R_OBJ(1), (PyObject *const *)&d[1], (Py_ssize_t)d[0], NULL);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* Py_SIZE of an object proven to be an exact list or tuple. */
STENCIL(ob_size)
{
    SET_I64(0, Py_SIZE(R_OBJ(1)));
    CONTINUE();
}

STENCIL(len)
{
    Py_ssize_t n = PyObject_Size(R_OBJ(1));
    if (n >= 0) {
        SET_I64(0, n);
        CONTINUE();
    }
    ERROR();
}

/* ---- sequences and iterators -------------------------------------------- */

/* seq[idx] for an exact list or tuple (SEQ the object type), int64 index
 * (negative wraps); exit if out of range.  INCREF: a new reference, else a
 * borrowed one. */
#define SEQ_GETITEM(NAME, SEQ, INCREF) \
    STENCIL(NAME) \
    { \
        SEQ *seq = (SEQ *)R_OBJ(1); \
        int64_t i = seq_index(R_I64(2), Py_SIZE(seq)); \
        if (i >= 0) { \
            PyObject *item = seq->ob_item[i]; \
            if (INCREF) { \
                Py_INCREF(item); \
            } \
            SET_OBJ(0, item); \
            CONTINUE(); \
        } \
        EXIT(); \
    }

/* The same with a non-negative constant index OP2 (the _c variants). */
#define SEQ_GETITEM_C(NAME, SEQ, INCREF) \
    STENCIL(NAME) \
    { \
        SEQ *seq = (SEQ *)R_OBJ(1); \
        if (OP(2) < (uint64_t)Py_SIZE(seq)) { \
            PyObject *item = seq->ob_item[OP(2)]; \
            if (INCREF) { \
                Py_INCREF(item); \
            } \
            SET_OBJ(0, item); \
            CONTINUE(); \
        } \
        EXIT(); \
    }

SEQ_GETITEM(list_getitem, PyListObject, 1)
SEQ_GETITEM(tuple_getitem, PyTupleObject, 1)
SEQ_GETITEM(list_getitem_borrowed, PyListObject, 0)
SEQ_GETITEM(tuple_getitem_borrowed, PyTupleObject, 0)
SEQ_GETITEM_C(list_getitem_c, PyListObject, 1)
SEQ_GETITEM_C(tuple_getitem_c, PyTupleObject, 1)
SEQ_GETITEM_C(list_getitem_borrowed_c, PyListObject, 0)
SEQ_GETITEM_C(tuple_getitem_borrowed_c, PyTupleObject, 0)

STENCIL(list_setitem)
{
    PyListObject *seq = (PyListObject *)R_OBJ(0);
    int64_t i = seq_index(R_I64(1), Py_SIZE(seq));
    if (UNLIKELY(i < 0)) {
        EXIT();  /* value is not stolen on this path */
    }
    PyObject *old = seq->ob_item[i];
    seq->ob_item[i] = R_OBJ(2);
    Py_DECREF(old);
    CONTINUE();
}

/* list.append(R0, R1) on an exact list, as CPython's CALL_LIST_APPEND:
 * the list takes a new reference to R1; error exit if growing fails. */
STENCIL(list_append)
{
    if (list_append((PyListObject *)R_OBJ(0), R_OBJ(1)) == 0) {
        CONTINUE();
    }
    ERROR();
}

/* seq[idx] = float(value) (see store_float); exit if out of range.  The _c
 * variant takes a non-negative constant index OP1. */
STENCIL(list_setitem_float)
{
    PyListObject *seq = (PyListObject *)R_OBJ(0);
    int64_t i = seq_index(R_I64(1), Py_SIZE(seq));
    if (UNLIKELY(i < 0)) {
        EXIT();
    }
    if (store_float(&seq->ob_item[i], R_F64(2)) == 0) {
        CONTINUE();
    }
    ERROR();
}

STENCIL(list_setitem_float_c)
{
    PyListObject *seq = (PyListObject *)R_OBJ(0);
    if (UNLIKELY(OP(1) >= (uint64_t)Py_SIZE(seq))) {
        EXIT();
    }
    if (store_float(&seq->ob_item[OP(1)], R_F64(2)) == 0) {
        CONTINUE();
    }
    ERROR();
}

STENCIL(range_iter_next)
{
    _PyRangeIterObject *r = (_PyRangeIterObject *)R_OBJ(1);
    if (r->len > 0) {
        long value = r->start;
        r->start = value + r->step;
        r->len--;
        SET_I64(0, value);
        CONTINUE();
    }
    EXIT();  /* left untouched: the interpreter's FOR_ITER finishes it */
}

STENCIL(list_iter_next)
{
    _PyListIterObject *it = (_PyListIterObject *)R_OBJ(1);
    PyListObject *seq = it->it_seq;
    if (seq != NULL && it->it_index < Py_SIZE(seq)) {
        PyObject *item = seq->ob_item[it->it_index++];
        Py_INCREF(item);
        SET_OBJ(0, item);
        CONTINUE();
    }
    EXIT();  /* left untouched: the interpreter's FOR_ITER finishes it */
}

STENCIL(tuple_iter_next)
{
    _PyTupleIterObject *it = (_PyTupleIterObject *)R_OBJ(1);
    PyTupleObject *seq = it->it_seq;
    if (seq != NULL && it->it_index < Py_SIZE(seq)) {
        PyObject *item = seq->ob_item[it->it_index++];
        Py_INCREF(item);
        SET_OBJ(0, item);
        CONTINUE();
    }
    EXIT();
}

STENCIL(iter_next)
{
    PyObject *it = R_OBJ(1);
    PyObject *item = Py_TYPE(it)->tp_iternext(it);
    if (item == NULL) {
        if (_PyErr_Occurred(tstate)) {
            if (UNLIKELY(!PyErr_ExceptionMatches(PyExc_StopIteration))) {
                ERROR();
            }
            PyErr_Clear();
        }
        EXIT();
    }
    SET_OBJ(0, item);
    CONTINUE();
}

/* tp_iternext without exits: the item, or NULL (0) at the end; StopIteration
 * is cleared as FOR_ITER does, any other error takes the error exit. */
STENCIL(iter_next_null)
{
    PyObject *it = R_OBJ(1);
    PyObject *item = Py_TYPE(it)->tp_iternext(it);
    if (item == NULL && _PyErr_Occurred(tstate)) {
        if (UNLIKELY(!PyErr_ExceptionMatches(PyExc_StopIteration))) {
            ERROR();
        }
        PyErr_Clear();
    }
    SET_OBJ(0, item);
    CONTINUE();
}

/* guard_global's check, in dicts g (globals) and b (builtins): whether the
 * name still means the object the trace was recorded with.  The writable cell
 * is {globals version, builtins version, globals, builtins, object}: while g
 * and b are the cell's, at the cell's versions (ma_version_tag changes on
 * every mutation and is globally unique), nothing is looked up; otherwise
 * look up as LOAD_GLOBAL does (globals, then builtins), compare, and remember
 * dicts and versions.  1: it does, 0: another object or unbound, -1: a lookup
 * raised. */
ALWAYS_INLINE int
tj_global_cached(PyObject *g, PyObject *b, const uint64_t *cell)
{
_Py_COMP_DIAG_PUSH
_Py_COMP_DIAG_IGNORE_DEPR_DECLS
    return ((PyDictObject *)g)->ma_version_tag == cell[0] &&
           ((PyDictObject *)b)->ma_version_tag == cell[1] &&
           (uint64_t)(uintptr_t)g == cell[2] && (uint64_t)(uintptr_t)b == cell[3];
_Py_COMP_DIAG_POP
}

ALWAYS_INLINE int
tj_global_lookup(PyThreadState *tstate, PyObject *g, PyObject *b, PyObject *name,
                 uint64_t *cell)
{
_Py_COMP_DIAG_PUSH
_Py_COMP_DIAG_IGNORE_DEPR_DECLS
    uint64_t gv = ((PyDictObject *)g)->ma_version_tag;
    uint64_t bv = ((PyDictObject *)b)->ma_version_tag;
_Py_COMP_DIAG_POP
    PyObject *v = PyDict_GetItemWithError(g, name);
    if (v == NULL) {
        if (UNLIKELY(_PyErr_Occurred(tstate))) {
            return -1;
        }
        v = PyDict_GetItemWithError(b, name);
        if (v == NULL) {
            return UNLIKELY(_PyErr_Occurred(tstate)) ? -1 : 0;
        }
    }
    if (v != (PyObject *)(uintptr_t)cell[4]) {
        return 0;
    }
    /* versions read before the lookups: a lookup that ran code and changed a
     * dict leaves a stale version, so the next check looks up again */
    if (gv != 0 && bv != 0) {
        cell[0] = gv;
        cell[1] = bv;
        cell[2] = (uint64_t)(uintptr_t)g;
        cell[3] = (uint64_t)(uintptr_t)b;
    }
    return 1;
}

/* The guards' checks, out of line: a guard's machine code is one call with
 * its descriptor, and this code stays in the instruction cache however many
 * guards the traces have (a template's are run once per render).
 * tj_guard_global's descriptor is {name, cell[5]}, in the running frame's
 * own dicts; tj_guard_global_in's is {function, name, cell[5]}, in an
 * inlined callee's function's dicts (func_globals and func_builtins never
 * change; the trace holds the function weakly, so no module dict is kept
 * alive).  1, 0 or -1 as tj_global_lookup. */
int
tj_guard_global(PyThreadState *tstate, _PyInterpreterFrame *frame, uint64_t *desc)
{
    PyObject *g = frame->f_globals, *b = frame->f_builtins;
    if (UNLIKELY(!PyDict_Check(g) || !PyDict_Check(b))) {
        return 0;
    }
    if (LIKELY(tj_global_cached(g, b, desc + 1))) {
        return 1;
    }
    return tj_global_lookup(tstate, g, b, (PyObject *)(uintptr_t)desc[0], desc + 1);
}

int
tj_guard_global_in(PyThreadState *tstate, _PyInterpreterFrame *frame, uint64_t *desc)
{
    (void)frame;
    /* The function's dicts as the cell remembers them: the function itself is
     * not read on the fast path (one cache line less per guard; a trace is
     * retired when a function it inlined dies, and these never change). */
    const uint64_t *cell = desc + 2;
    PyObject *g = (PyObject *)(uintptr_t)cell[2], *b = (PyObject *)(uintptr_t)cell[3];
    if (LIKELY(g != NULL && tj_global_cached(g, b, cell))) {
        return 1;
    }
    PyFunctionObject *func = (PyFunctionObject *)(uintptr_t)desc[0];
    return tj_global_lookup(tstate, func->func_globals, func->func_builtins,
                            (PyObject *)(uintptr_t)desc[1], desc + 2);
}

/* tj_guard_module_attr's descriptor is {module, name, cell[5]}: the module's
 * dict stands for both globals and builtins (a name missing from it fails). */
int
tj_guard_module_attr(PyThreadState *tstate, _PyInterpreterFrame *frame, uint64_t *desc)
{
    (void)frame;
    const uint64_t *cell = desc + 2;
    PyObject *d = (PyObject *)(uintptr_t)cell[2];
    if (LIKELY(d != NULL && tj_global_cached(d, d, cell))) {
        return 1;
    }
    d = PyModule_GetDict((PyObject *)(uintptr_t)desc[0]);
    return tj_global_lookup(tstate, d, d, (PyObject *)(uintptr_t)desc[1], desc + 2);
}

typedef int (*tj_guard_fn)(PyThreadState *, _PyInterpreterFrame *, uint64_t *);

/* guard_global and guard_global_in: OP0 the descriptor, OP1 tj_guard_global
 * or tj_guard_global_in.  Exit if the name now means another object or is
 * missing; error exit if the lookup raised. */
STENCIL(guard_global)
{
    int same = ((tj_guard_fn)(uintptr_t)OP_OPAQUE(1))(tstate, frame,
                                                    (uint64_t *)(uintptr_t)OP(0));
    if (UNLIKELY(same <= 0)) {
        if (same < 0) {
            ERROR();
        }
        EXIT();
    }
    CONTINUE();
}

/* A global (or builtin) name, OP1, whose value varies between runs of the
 * code (its guard_global went hot): looked up at each use in the running
 * frame's own dicts.  R0 a new reference; exit when the name is missing (the
 * interpreter raises NameError); error exit if the lookup raised. */
STENCIL(load_global)
{
    PyObject *g = frame->f_globals, *b = frame->f_builtins;
    if (UNLIKELY(!PyDict_Check(g) || !PyDict_Check(b))) {
        EXIT();
    }
    PyObject *name = (PyObject *)(uintptr_t)OP(1);
    PyObject *v;
    if (UNLIKELY(PyDict_GetItemRef(g, name, &v) < 0)) {
        ERROR();
    }
    if (v == NULL) {
        if (UNLIKELY(PyDict_GetItemRef(b, name, &v) < 0)) {
            ERROR();
        }
        if (v == NULL) {
            EXIT();
        }
    }
    SET_OBJ(0, v);
    CONTINUE();
}

/* ---- control ------------------------------------------------------------ */

/* Exit when the interpreter has work pending (signals, GIL drop requests,
 * async exceptions).  Monitoring changes need no check here: CPython
 * re-instruments every executing code object at once, so versions never
 * differ; another thread can only turn a tool on after this one dropped the
 * GIL (at this exit or inside a call-out, checked by check_instrumentation). */
STENCIL(check_eval_breaker)
{
    uintptr_t breaker = _Py_atomic_load_uintptr_relaxed(&tstate->eval_breaker);
    if (!(breaker & _PY_EVAL_EVENTS_MASK)) {
        CONTINUE();
    }
    EXIT();
}

/* Whether a monitoring tool other than ours (settrace and setprofile are tools
 * too) wants events globally or in this code: then the interpreter runs it. */
#define TJ_OUR_TOOL (1u << 5) /* sys.monitoring.OPTIMIZER_ID */
/* The OR of n (9 to 16) tool bytes: two overlapping word loads, not a byte
 * loop (check_instrumentation runs it after every call-out). */
ALWAYS_INLINE uint8_t
tj_or_tools(const uint8_t *tools, size_t n)
{
    uint64_t a, b;
    __builtin_memcpy(&a, tools, 8);
    __builtin_memcpy(&b, tools + n - 8, 8);
    a |= b;
    a |= a >> 32;
    a |= a >> 16;
    a |= a >> 8;
    return (uint8_t)a;
}

/* The tools with local events on code object co (a bit per tool). */
ALWAYS_INLINE uint8_t
tj_local_tools(PyCodeObject *co)
{
    _Static_assert(_PY_MONITORING_LOCAL_EVENTS > 8 && _PY_MONITORING_LOCAL_EVENTS <= 16,
                   "tj_or_tools reads two words");
    if (co->_co_monitoring == NULL) {
        return 0;
    }
    return tj_or_tools(co->_co_monitoring->active_monitors.tools,
                       _PY_MONITORING_LOCAL_EVENTS);
}

ALWAYS_INLINE int
tj_other_tools(PyThreadState *tstate, PyCodeObject *co)
{
    _Static_assert(_PY_MONITORING_UNGROUPED_EVENTS > 8 &&
                   _PY_MONITORING_UNGROUPED_EVENTS <= 16, "tj_or_tools reads two words");
    uint8_t any = tj_local_tools(co) |
                  tj_or_tools(tstate->interp->monitors.tools, _PY_MONITORING_UNGROUPED_EVENTS);
    return (any & ~TJ_OUR_TOOL) != 0;
}

typedef int (*tj_watched_fn)(PyThreadState *, PyCodeObject *, PyObject **);

/* Whether another tool set local events on one of the code objects a trace
 * inlined (NULL-terminated; NULL: none): their bodies run natively, so the
 * trace steps aside as for its own code.  Global monitors are in
 * tj_other_tools. */
ALWAYS_INLINE int
tj_inlined_watched(PyObject **inlined)
{
    if (inlined == NULL) {
        return 0;
    }
    uint8_t any = 0;
    for (; *inlined != NULL; inlined++) {
        any |= tj_local_tools((PyCodeObject *)*inlined);
    }
    return (any & ~TJ_OUR_TOOL) != 0;
}

/* After code ran (a call-out): exit, at the next instruction, if another
 * tool now watches this code.  A version comparison cannot tell: CPython
 * re-instruments executing code at once, and local events keep versions. */
STENCIL(check_instrumentation)
{
    /* OP0: the trace's retired flag, set when it was taken out of use while
     * it may run (the code that ran freed an object it holds weakly, or
     * evicted it): leave before anything relies on such an object. */
    if (!*(volatile uint64_t *)(uintptr_t)OP(0) &&
        !((tj_watched_fn)(uintptr_t)OP_OPAQUE(1))(tstate, _PyFrame_GetCode(frame),
                                                  (PyObject **)(uintptr_t)OP(2))) {
        CONTINUE();
    }
    EXIT();
}

/* check_instrumentation's test, out of line (its OP1): it follows every
 * call-out, and inlined it was most of the stencil's 230 bytes.  OP2 the
 * inlined calls' code objects (tj_inlined_watched). */
int
tj_watched(PyThreadState *tstate, PyCodeObject *co, PyObject **inlined)
{
    return tj_other_tools(tstate, co) || tj_inlined_watched(inlined) ||
           tstate->c_tracefunc != NULL || tstate->c_profilefunc != NULL;
}

STENCIL(jump)
{
    JUMP_TARGET();
}

/* The interpreter sets instr_ptr at every instruction; native code does it
 * before ops that can run arbitrary code (warnings, tracebacks, frame
 * introspection see the right line). */
STENCIL(set_ip)
{
    frame->instr_ptr = _PyCode_CODE(_PyFrame_GetCode(frame)) + OP(0);
    CONTINUE();
}

STENCIL(exit_count)
{
    *(uint64_t *)(uintptr_t)OP(0) += 1;
    CONTINUE();
}

STENCIL(exit_finish)
{
    frame->instr_ptr = _PyCode_CODE(_PyFrame_GetCode(frame)) + OP(0);
    frame->stacktop = (int)OP(1);
    return (int)OP(2);
}

/* ---- compact exits ------------------------------------------------------
 *
 * An exit's frame writes, described by data instead of one stencil per
 * value: most exits of a huge function run once per call at most, and a
 * stencil per write made them most of the machine code.  Descriptor (uint64
 * words; tracejit/backend/codegen.py ExitDesc builds it):
 *   [0] exit counter address, [1] pc (code units), [2] stacktop, [3] exit
 *   code (< 0: error exit), [4] stacktop and [5] exit code if boxing fails
 *   (at pc), [6] number of words n, then one word per write:
 *   kind | slot << 8 | register << 32, or with TJ_W_IMM two: kind | slot << 8,
 *   then the object itself (a constant of the trace needs no register).
 * A store releases the slot's old value (store_local); a raw write fills a
 * dead value-stack slot.  Boxing reuses an int or float only the slot holds
 * (store_int, store_float).  Values are written in order, as the stencils
 * did. */

enum {
    TJ_W_OWNED = 0,    /* the register's reference goes to the frame */
    TJ_W_BORROWED = 1, /* a new reference to the register's object */
    TJ_W_INT = 2,      /* box the int64 register */
    TJ_W_FLOAT = 3,    /* box the double register */
    TJ_W_BOOL = 4,     /* Py_True or Py_False (immortal) */
    TJ_W_RAW = 8,      /* flag: a raw write, no old value to release */
    TJ_W_IMM = 16,     /* flag: the object is the next word, not a register */
};

/* The writes in the n words w to the frame; -1 if boxing failed (MemoryError set;
 * references not yet written to the frame are lost). */
ALWAYS_INLINE int
tj_write_frame(_PyInterpreterFrame *frame, uint64_t *regs, const uint64_t *w, uint64_t n)
{
    PyObject **lp = frame->localsplus;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t word = w[i];
        unsigned kind = (unsigned)(word & 0xFF);
        PyObject **slot = &lp[(word >> 8) & 0xFFFFFF];
        uint64_t r = (kind & TJ_W_IMM) ? w[++i] : regs[word >> 32];
        PyObject *v;
        switch (kind & 7) {
        case TJ_W_OWNED:
            v = (PyObject *)(uintptr_t)r;
            break;
        case TJ_W_BORROWED:
            v = (PyObject *)(uintptr_t)r;
            Py_XINCREF(v);
            break;
        case TJ_W_INT:
            if (!(kind & TJ_W_RAW)) {
                if (store_int(slot, (int64_t)r) < 0) {
                    return -1;
                }
                continue;
            }
            v = PyLong_FromLongLong((long long)(int64_t)r);
            if (v == NULL) {
                return -1;
            }
            break;
        case TJ_W_FLOAT: {
            double f;
            __builtin_memcpy(&f, &r, sizeof f);
            if (!(kind & TJ_W_RAW)) {
                if (store_float(slot, f) < 0) {
                    return -1;
                }
                continue;
            }
            v = PyFloat_FromDouble(f);
            if (v == NULL) {
                return -1;
            }
            break;
        }
        default: /* TJ_W_BOOL */
            v = r ? Py_True : Py_False;
            break;
        }
        if (kind & TJ_W_RAW) {
            *slot = v;
        }
        else {
            PyObject *old = *slot;
            *slot = v;
            Py_XDECREF(old);
        }
    }
    return 0;
}

ALWAYS_INLINE int
tj_finish(_PyInterpreterFrame *frame, uint64_t pc, uint64_t stacktop, uint64_t code)
{
    frame->instr_ptr = _PyCode_CODE(_PyFrame_GetCode(frame)) + pc;
    frame->stacktop = (int)stacktop;
    return (int)(int64_t)code;
}

/* Write the frame, count the exit, leave: returns the exit code (or the
 * out-of-memory exit's). */
int
tj_exit_write(_PyInterpreterFrame *frame, uint64_t *regs, const uint64_t *d)
{
    if (UNLIKELY(tj_write_frame(frame, regs, d + 7, d[6]) < 0)) {
        return tj_finish(frame, d[1], d[4], d[5]);
    }
    *(uint64_t *)(uintptr_t)d[0] += 1;
    return tj_finish(frame, d[1], d[2], d[3]);
}

/* An exit inside inlined calls (see "inlined calls" below): after the
 * writes, the descriptor goes on with
 *   [7 + n] tj_resume_chain, [8 + n] its tj_chain_desc, [9 + n] the
 *   trace's CALL (code units), [10 + n] the instruction after it,
 *   [11 + n] the stack depth during the CALL.
 * Builds the resume objects, writes the caller's frame as during its CALL
 * and runs the callee to its end at once: the exit leaves after the CALL
 * with the result ([2] the stack top then, [3] the exit code), or fails at
 * the CALL with the callee's exception ([5], as an out-of-memory exit at
 * [1]/[4] does). */
typedef PyObject *(*tj_chain_vfn)(uint64_t *regs, const void *d);

int
tj_exit_resume(_PyInterpreterFrame *frame, uint64_t *regs, const uint64_t *d)
{
    uint64_t n = d[6];
    const uint64_t *r = d + 7 + n;
    PyObject *chain = ((tj_chain_vfn)(uintptr_t)r[0])(regs, (const void *)(uintptr_t)r[1]);
    if (UNLIKELY(chain == NULL)) {
        return tj_finish(frame, d[1], d[4], d[5]);
    }
    if (UNLIKELY(tj_write_frame(frame, regs, d + 7, n) < 0)) {
        Py_DECREF(chain);
        return tj_finish(frame, d[1], d[4], d[5]);
    }
    uint64_t depth = r[4];
    frame->instr_ptr = _PyCode_CODE(_PyFrame_GetCode(frame)) + r[2];
    frame->stacktop = (int)depth;
    PyObject *res = PyObject_CallNoArgs(chain);
    Py_DECREF(chain);
    *(uint64_t *)(uintptr_t)d[0] += 1;
    if (res == NULL) {
        return tj_finish(frame, r[2], depth, d[5]);
    }
    frame->localsplus[depth] = res;
    return tj_finish(frame, r[3], d[2], d[3]);
}

typedef int (*tj_exit_fn)(_PyInterpreterFrame *, uint64_t *, const uint64_t *);

/* Leave through a runtime function (OP1: tj_exit_write or tj_exit_resume)
 * with its descriptor (OP0). */
STENCIL(exit_write)
{
    return ((tj_exit_fn)(uintptr_t)OP_OPAQUE(1))(frame, regs,
                                                 (const uint64_t *)(uintptr_t)OP(0));
}

/* ---- inlined calls ------------------------------------------------------
 *
 * An inlined callee has no frame while native code runs.  An exit inside it
 * writes the caller's frame back as it is during its CALL (the CALL's inputs
 * consumed, instr_ptr at the CALL), builds a *resume object* (tj_resume
 * below) for the callee and calls it at once (tj_exit_resume): it rebuilds the
 * callee's frame (locals, value stack, instr_ptr at the exit) and runs it in
 * the interpreter.  The exit then leaves after the CALL with the callee's
 * return value on the stack, or as an error exit at the CALL with the
 * callee's exception, which the dispatcher and the interpreter handle as
 * the exception of a Python callee (RAISE one unit before the CALL).
 * Nested inlined calls nest resume objects: an outer callee's resume object
 * runs the inner one the same way before its own frame continues.
 */

typedef struct {
    PyObject_VAR_HEAD
    PyObject *func;       /* the callee (f_funcobj) */
    PyObject *code;       /* the code traced (func.__code__ may have changed) */
    PyObject *exc;        /* error mode: the exception raised at pc, else NULL */
    int64_t pc;           /* code units: where the frame continues (or failed);
                             with an inner call, its CALL */
    uint64_t unwind;      /* handler (TJ_UNWIND_*) of the failing instruction
                             (error mode) or of the CALL (inner call), or 0 */
    int64_t raise_at;     /* the code unit a RAISE event reports on failure */
    int64_t next_pc;      /* with an inner call: the instruction after the CALL */
    int64_t inner_argc;   /* the stack ends with [inner, NULL, None * argc], or -1 */
    PyObject *recursion_msg;  /* borrowed: the RecursionError message (no data here) */
    int64_t used;
    PyObject *values[1];  /* ob_size entries: localsplus, then the value stack */
} tj_resume;

/* What an exit knows at compile time about the inlined frames it leaves
 * (tracejit/runtime/resume.py mirrors these): per frame, its function, code,
 * pc, handler, RAISE unit and next instruction (see tj_resume), the CALL
 * oparg of the frame below, and one entry per localsplus/stack value:
 * (register << 2) | kind, kind 0 NULL, 1 a borrowed reference (increfed),
 * 2 an owned one (stolen); or a constant's address | 3 (increfed). */
typedef struct {
    PyObject *func;
    PyObject *code;
    int64_t pc;
    uint64_t unwind;
    int64_t argc;
    int64_t n;
    const uint64_t *entries;
    int64_t raise_at;
    int64_t next_pc;
} tj_frame_desc;

typedef struct {
    PyTypeObject *type;   /* the resume type */
    int64_t exc_reg;      /* register holding the exception raised, or -1 */
    PyObject *recursion_msg;  /* "maximum recursion depth exceeded" (kept alive) */
    int64_t nframes;
    tj_frame_desc frames[1];  /* outermost first */
} tj_chain_desc;

/* R0 = a borrowed field of an object: *(PyObject **)((char *)R1 + OP2). */
STENCIL(load_field)
{
    SET_OBJ(0, *(PyObject **)((char *)R_OBJ(1) + OP(2)));
    CONTINUE();
}

/* STORE_DEREF: the cell R0 takes R1 (stolen) and releases its old content. */
STENCIL(store_cell)
{
    replace_ref(&((PyCellObject *)R_OBJ(0))->ob_ref, R_OBJ(1));
    CONTINUE();
}

/* MAKE_FUNCTION: R0 = a new function of code object R1 and the frame's
 * globals, with the code's version (as the interpreter's). */
STENCIL(make_function)
{
    PyObject *code = R_OBJ(1);
    PyFunctionObject *f = (PyFunctionObject *)PyFunction_New(code, frame->f_globals);
    if (f != NULL) {
        _PyFunction_SetVersion(f, ((PyCodeObject *)code)->co_version);
        SET_OBJ(0, f);
        CONTINUE();
    }
    ERROR();
}

/* SET_FUNCTION_ATTRIBUTE: the new function R0 takes R1 (stolen) as the
 * attribute flag OP2 names, as the interpreter does. */
STENCIL(set_function_attribute)
{
    PyFunctionObject *f = (PyFunctionObject *)R_OBJ(0);
    PyObject *attr = R_OBJ(1);
    switch (OP(2)) {
    case 8:
        f->func_closure = attr;
        break;
    case 4:
        f->func_annotations = attr;
        break;
    case 2:
        f->func_kwdefaults = attr;
        break;
    default:
        f->func_defaults = attr;
        _PyFunction_SetVersion(f, 0);
        break;
    }
    CONTINUE();
}

/* Exit unless the field at offset OP1 of R0 is the object OP2 (a function's
 * __code__ or __defaults__). */
STENCIL(guard_field_is)
{
    if (*(uint64_t *)((char *)R_OBJ(0) + OP(1)) == OP(2)) {
        CONTINUE();
    }
    EXIT();
}

/* Exit unless the type OP0 still has version tag OP1 (its attributes, and
 * those of its bases, are unchanged since the trace was compiled). */
STENCIL(guard_type_version)
{
    if (((PyTypeObject *)(uintptr_t)OP(0))->tp_version_tag == (unsigned int)OP(1)) {
        CONTINUE();
    }
    EXIT();
}

/* R0 = the exception being raised (taken over; error stubs of inlined frames). */
STENCIL(fetch_exc)
{
    SET_OBJ(0, PyErr_GetRaisedException());
    CONTINUE();
}


/* ---- runtime: the native dispatcher --------------------------------------
 *
 * tj_dispatch is registered (as a METH_FASTCALL builtin) as the optimizer
 * tool's JUMP and PY_START callback.  OP0 is the address of the tj_state the
 * runtime (tracejit/runtime/dispatch.py, which mirrors these structs with
 * ctypes) fills in.  A back-edge or function start with a compiled trace
 * runs it on the caller's frame; a trace's exit linked to another trace
 * continues there without returning to the interpreter; everything else
 * (counting, recording, hot exits, own unwinding) goes to Python.
 */

typedef int (*tj_entry_fn)(_PyInterpreterFrame *, PyThreadState *);

typedef struct tj_trace tj_trace;
struct tj_trace {
    tj_entry_fn entry;
    uint64_t *counters;   /* per exit: times taken (counted by the exit stubs) */
    tj_trace **links;     /* per exit: the trace to continue in, or NULL */
    uint64_t *hot_at;     /* per exit: count at which on_exit is told */
    uint64_t *unwind;     /* per error exit: the failing instruction's handler
                             (TJ_UNWIND_*), or 0: the interpreter unwinds */
    PyObject *handle;     /* identifies the trace to on_exit */
    uint64_t entries;
    PyObject **inlined;   /* the inlined calls' code objects, NULL-terminated
                             (or NULL): see tj_inlined_watched */
    uint64_t pure;        /* a function trace that, run to its return, ran no
                             Python code and changed no dict (see tj_call_py) */
};

typedef struct {
    PyObject *code;       /* NULL: empty slot */
    int64_t offset;       /* back-edge target or PY_START offset (bytes) */
    tj_trace *trace;      /* NULL: a location still counting */
    int64_t countdown;    /* events absorbed here before Python counts again */
} tj_slot;

typedef struct {
    tj_slot *table;
    uint64_t mask;        /* table size - 1 (a power of two) */
    PyObject *fallback;   /* Python callback: counting and recording */
    PyObject *on_exit;    /* see tj_tell */
    uint64_t busy;        /* nonzero while recording or while the JIT's Python
                             code runs: all events go to fallback */
    uint64_t native_entries;
    uint64_t transfers;
    uint64_t depth;       /* traces running now (all threads): nonzero while
                             machine code may be on a C stack */
    uint64_t direct_calls; /* function traces tj_call_py ran on a frame it pushed */
    uint64_t impure;      /* the last tj_call_py did more than run a pure trace
                             to its return (guard_pure_call) */
} tj_state;

/* An exception-table entry, packed: handler target (bytes) in bits 0-31,
 * stack depth in bits 32-47, lasti flag in bit 48, bit 63 set (and the RAISE
 * offset below). */
#define TJ_UNWIND_TARGET(u) ((int)((u) & 0xffffffffu))
#define TJ_UNWIND_DEPTH(u) ((int)(((u) >> 32) & 0xffffu))
#define TJ_UNWIND_LASTI(u) ((int)(((u) >> 48) & 1u))
/* bits 49-62: the code unit a RAISE event reports, relative to the failing
 * instruction, plus one (see _raise_delta in runtime/hooks.py) */
#define TJ_UNWIND_RAISE_DELTA(u) ((long)(((u) >> 49) & 0x3fffu) - 1)

/* What the interpreter's exception_unwind does, for the handler of the
 * instruction that failed (instr_ptr, set by the exit): the interpreter
 * itself would look the handler up at the back-edge or RESUME that entered
 * native code.  Returns 0 when the frame continues at the handler.
 *
 * With `events` (a tool was turned on by the call-out that failed: tools
 * already on keep native code out), it also raises the RAISE and
 * EXCEPTION_HANDLED events the interpreter would, for this frame, at the
 * failing instruction and the handler. */
ALWAYS_INLINE int
tj_fire_exception_event(PyThreadState *tstate, int event, PyCodeObject *co, long index)
{
    PyMonitoringState ms;
    ms.active = tstate->interp->monitors.tools[event] & (uint8_t)~TJ_OUR_TOOL;
    ms.opaque = 0;
    if (!ms.active) {
        return 0;
    }
    int32_t offset = (int32_t)(index * (long)sizeof(_Py_CODEUNIT));
    if (event == PY_MONITORING_EVENT_RAISE) {
        return _PyMonitoring_FireRaiseEvent(&ms, (PyObject *)co, offset);
    }
    return _PyMonitoring_FireExceptionHandledEvent(&ms, (PyObject *)co, offset);
}

ALWAYS_INLINE int
tj_unwind(PyThreadState *tstate, _PyInterpreterFrame *frame, uint64_t u, int events)
{
    PyFrameObject *f = PyEval_GetFrame();
    if (f == NULL || PyTraceBack_Here(f) < 0) {
        return -1;
    }
    PyCodeObject *co = _PyFrame_GetCode(frame);
    _Py_CODEUNIT *code0 = _PyCode_CODE(co);
    long lasti = (long)(frame->instr_ptr - code0);
    if (events && tj_fire_exception_event(tstate, PY_MONITORING_EVENT_RAISE, co,
                                          lasti + TJ_UNWIND_RAISE_DELTA(u)) < 0) {
        return -1;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject **base = frame->localsplus + co->co_nlocalsplus + TJ_UNWIND_DEPTH(u);
    PyObject **top = frame->localsplus + frame->stacktop;
    while (top > base) {
        PyObject *o = *--top;
        *top = NULL;
        frame->stacktop = (int)(top - frame->localsplus);
        if (o != NULL) {
            Py_DECREF(o);
        }
    }
    if (TJ_UNWIND_LASTI(u)) {
        PyObject *l = PyLong_FromLong(lasti);
        if (l == NULL) {
            Py_DECREF(exc);
            return -1;
        }
        *top++ = l;
    }
    *top++ = exc;
    frame->stacktop = (int)(top - frame->localsplus);
    if (events) {
        /* The event takes the exception from the error indicator. */
        PyErr_SetRaisedException(Py_NewRef(exc));
        if (tj_fire_exception_event(tstate, PY_MONITORING_EVENT_EXCEPTION_HANDLED, co,
                                    TJ_UNWIND_TARGET(u) / 2) < 0) {
            return -1;
        }
        PyObject *again = PyErr_GetRaisedException();
        if (again != NULL) {
            Py_DECREF(again);
        }
    }
    frame->instr_ptr = code0 + TJ_UNWIND_TARGET(u) / 2;
    return 0;
}

ALWAYS_INLINE tj_slot *
tj_lookup(tj_state *st, PyObject *code, int64_t offset)
{
    uint64_t h = (((uint64_t)(uintptr_t)code >> 4) ^ ((uint64_t)offset * 0x9E3779B97F4A7C15ull));
    for (uint64_t i = h & st->mask;; i = (i + 1) & st->mask) {
        tj_slot *s = &st->table[i];
        if (s->code == code && s->offset == offset) {
            return s;
        }
        if (s->code == NULL) {
            return NULL;
        }
    }
}

/* The JIT's Python callbacks run on the program's Python stack: near its
 * recursion limit they are not called (the event is skipped), so the program's
 * own next call raises RecursionError where it would without the JIT. */
#define TJ_PY_FRAMES_NEEDED 64

/* on_exit(handle, exit number): the exit reached its hot count. */
ALWAYS_INLINE PyObject *
tj_tell(tj_state *st, tj_trace *t, int code)
{
    if (PyThreadState_Get()->py_recursion_remaining < TJ_PY_FRAMES_NEEDED) {
        return Py_NewRef(Py_None);
    }
    PyObject *n = PyLong_FromLong(code);
    if (n == NULL) {
        return NULL;
    }
    PyObject *argv[2] = {t->handle, n};
    PyObject *res = PyObject_Vectorcall(st->on_exit, argv, 2, NULL);
    Py_DECREF(n);
    return res;
}

/* Runs trace t on `frame` (running code co) and the traces its exits link
 * to, until an exit that is not linked: 0 when the frame continues at its
 * instr_ptr (a handler tj_unwind found included), -1 with an exception set
 * when the exception leaves the frame.  *last: the last trace run, or NULL
 * once the JIT's Python code ran (a hot exit was told). */
ALWAYS_INLINE int
tj_run(tj_state *st, PyThreadState *tstate, _PyInterpreterFrame *frame, PyCodeObject *co,
       tj_trace *t, tj_trace **last)
{
    st->native_entries++;
    t->entries++;
    for (;;) {
        /* Native code continues the program: the calls it makes must raise
         * monitoring events as the interpreter's would, but CPython counts a
         * monitoring callback as tracing (which silences events) until it
         * returns. */
        int tracing = tstate->tracing;
        tstate->tracing = 0;
        st->depth++;
        int r = t->entry(frame, tstate);
        st->depth--;
        tstate->tracing = tracing;
        *last = t;
        if (r < 0) {
            uint64_t u = t->unwind[-r - 1];
            if (u != 0 && PyErr_Occurred() &&
                tj_unwind(tstate, frame, u, tj_other_tools(tstate, co)) == 0) {
                return 0;
            }
            return -1;
        }
        tj_trace *next = t->links[r];
        /* Code the trace called may have turned a tool on after the last
         * check (in the instruction that exited): the interpreter goes on. */
        if (next != NULL && !tj_other_tools(tstate, co) && !tj_inlined_watched(next->inlined)) {
            st->transfers++;
            next->entries++;
            t = next;
            continue;
        }
        if (UNLIKELY(t->counters[r] >= t->hot_at[r])) {
            *last = NULL;
            PyObject *res = tj_tell(st, t, r);
            if (res == NULL) {
                return -1;
            }
            Py_DECREF(res);
        }
        return 0;
    }
}

PyObject *
tj_dispatch(PyObject *self, PyObject *const *args, Py_ssize_t nargsf)
{
    tj_state *st = (tj_state *)(uintptr_t)OP(0);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyThreadState *tstate = PyThreadState_Get();
    if (st->busy || nargs < 2 || tstate->c_tracefunc != NULL || tstate->c_profilefunc != NULL) {
        goto fallback;
    }
    PyObject *where = args[nargs - 1];
    if (!PyLong_CheckExact(where) || !_PyLong_IsCompact((PyLongObject *)where)) {
        goto fallback;
    }
    tj_slot *slot = tj_lookup(st, args[0], (int64_t)_PyLong_CompactValue((PyLongObject *)where));
    if (slot == NULL) {
        goto fallback;
    }
    tj_trace *t = slot->trace;
    if (t == NULL) {
        /* Counting towards hotness: Python hears only of every countdown-th event. */
        if (slot->countdown > 1) {
            slot->countdown--;
            return Py_NewRef(Py_None);
        }
        goto fallback;
    }
    _PyInterpreterFrame *frame = tstate->current_frame;
    if (frame == NULL || frame->f_executable != args[0] ||
        tj_other_tools(tstate, (PyCodeObject *)args[0]) || tj_inlined_watched(t->inlined)) {
        goto fallback;
    }
    tj_trace *last;
    if (tj_run(st, tstate, frame, (PyCodeObject *)args[0], t, &last) < 0) {
        return NULL;
    }
    return Py_NewRef(Py_None);
fallback:
    if (tstate->py_recursion_remaining < TJ_PY_FRAMES_NEEDED) {
        return Py_NewRef(Py_None);
    }
    return PyObject_Vectorcall(st->fallback, args, nargsf, NULL);
}

/* The INSTRUCTION callback (recording): the Python function OP0, unless the
 * program is near its recursion limit (TJ_PY_FRAMES_NEEDED). */
PyObject *
tj_instruction(PyObject *self, PyObject *const *args, Py_ssize_t nargsf)
{
    if (PyThreadState_Get()->py_recursion_remaining < TJ_PY_FRAMES_NEEDED) {
        return Py_NewRef(Py_None);
    }
    return PyObject_Vectorcall((PyObject *)(uintptr_t)OP(0), args, nargsf, NULL);
}

/* Runs a trace on a frame object: how Python code (tests, tools) calls a trace
 * without an interpreter frame of its own in between. */
int
tj_call(uint64_t entry, PyFrameObject *f)
{
    return ((tj_entry_fn)(uintptr_t)entry)(f->f_frame, PyThreadState_Get());
}

/* Pushes a frame of func running code on the thread's data stack, every
 * local NULL (what _PyFrame_PushUnchecked and _PyFrame_Initialize of
 * pycore_frame.h do, inlined: clang outlines those static inline functions
 * once they have two callers); NULL if the current chunk is full.  The frames
 * tj_resume_call and tj_call_py run. */
ALWAYS_INLINE _PyInterpreterFrame *
tj_push_frame(PyThreadState *tstate, PyFunctionObject *func, PyCodeObject *code)
{
    if (!_PyThreadState_HasStackSpace(tstate, code->co_framesize)) {
        return NULL;
    }
    _PyInterpreterFrame *frame = (_PyInterpreterFrame *)tstate->datastack_top;
    tstate->datastack_top += code->co_framesize;
    frame->f_funcobj = Py_NewRef(func);
    frame->f_executable = Py_NewRef(code);
    frame->f_builtins = func->func_builtins;
    frame->f_globals = func->func_globals;
    frame->f_locals = NULL;
    frame->stacktop = code->co_nlocalsplus;
    frame->frame_obj = NULL;
    frame->instr_ptr = _PyCode_CODE(code);
    frame->return_offset = 0;
    frame->owner = FRAME_OWNED_BY_THREAD;
    for (int i = 0; i < code->co_nlocalsplus; i++) {
        frame->localsplus[i] = NULL;
    }
    return frame;
}

/* ---- runtime: resume objects (see "inlined calls" above) ------------------
 *
 * tj_resume_call is the resume type's tp_call: it pushes the callee's frame
 * on the thread's data stack, fills localsplus and the value stack, and runs
 * it with _PyEval_EvalFrameDefault from instr_ptr = pc.  With an inner
 * inlined call (an outer frame of the exit), the frame first waits at its
 * CALL while the inner resume object runs, then continues after the CALL
 * with the result, or fails at the CALL as with a Python callee's exception.
 * In error mode the exception is raised at pc as the interpreter's own
 * error path would: a traceback entry for the callee's line, RAISE, then
 * the failing instruction's handler in the callee (EXCEPTION_HANDLED), or
 * the exception leaves the callee (PY_UNWIND, its frame is popped) and the
 * caller's CALL fails with it.  Events go to the tools watching globally
 * (native code runs only while no other tool watches this code). */
/* Py_XDECREF, inlined (clang may outline the header's static inline one) */
#define TJ_XDECREF(o) do { PyObject *tj_o_ = (PyObject *)(o); if (tj_o_ != NULL) { Py_DECREF(tj_o_); } } while (0)

ALWAYS_INLINE int
tj_fire_frame_event(PyThreadState *tstate, int event, PyCodeObject *co, long index)
{
    PyMonitoringState ms;
    ms.active = tstate->interp->monitors.tools[event] & (uint8_t)~TJ_OUR_TOOL;
    if (co->_co_monitoring != NULL) {
        ms.active |= co->_co_monitoring->active_monitors.tools[event] &
                     (uint8_t)~TJ_OUR_TOOL;
    }
    ms.opaque = 0;
    if (!ms.active) {
        return 0;
    }
    int32_t offset = (int32_t)(index * (long)sizeof(_Py_CODEUNIT));
    if (event == PY_MONITORING_EVENT_RAISE) {
        return _PyMonitoring_FireRaiseEvent(&ms, (PyObject *)co, offset);
    }
    if (event == PY_MONITORING_EVENT_PY_UNWIND) {
        return _PyMonitoring_FirePyUnwindEvent(&ms, (PyObject *)co, offset);
    }
    return _PyMonitoring_FireExceptionHandledEvent(&ms, (PyObject *)co, offset);
}

/* The exception set fails `frame` (not yet run, on the data stack, instr_ptr
 * at the failing instruction): what the interpreter's error path does. */
ALWAYS_INLINE PyObject *
tj_resume_fail(PyThreadState *tstate, _PyInterpreterFrame *frame, tj_resume *r)
{
    PyCodeObject *co = (PyCodeObject *)r->code;
    _PyInterpreterFrame *caller = tstate->current_frame;
    /* The frame is current while the traceback entry is made. */
    tstate->current_frame = frame;
    PyFrameObject *f = PyEval_GetFrame();
    if (f == NULL || PyTraceBack_Here(f) < 0 ||
        tj_fire_frame_event(tstate, PY_MONITORING_EVENT_RAISE, co, (long)r->raise_at) < 0) {
        tstate->current_frame = caller;
        _PyEval_FrameClearAndPop(tstate, frame);
        return NULL;
    }
    uint64_t u = r->unwind;
    if (u == 0) {
        /* the interpreter reports the unwind at the instruction before its
         * next_instr, as RAISE */
        tj_fire_frame_event(tstate, PY_MONITORING_EVENT_PY_UNWIND, co, (long)r->raise_at);
        tstate->current_frame = caller;
        _PyEval_FrameClearAndPop(tstate, frame);
        return NULL;
    }
    /* The handler of the failing instruction, in the callee. */
    PyObject *exc = PyErr_GetRaisedException();
    _Py_CODEUNIT *code0 = _PyCode_CODE(co);
    long lasti = (long)(frame->instr_ptr - code0);
    PyObject **base = frame->localsplus + co->co_nlocalsplus + TJ_UNWIND_DEPTH(u);
    PyObject **top = frame->localsplus + frame->stacktop;
    while (top > base) {
        PyObject *o = *--top;
        *top = NULL;
        frame->stacktop = (int)(top - frame->localsplus);
        TJ_XDECREF(o);
    }
    if (TJ_UNWIND_LASTI(u)) {
        PyObject *l = PyLong_FromLong(lasti);
        if (l == NULL) {
            Py_DECREF(exc);
            tstate->current_frame = caller;
            _PyEval_FrameClearAndPop(tstate, frame);
            return NULL;
        }
        *top++ = l;
    }
    *top++ = exc;
    frame->stacktop = (int)(top - frame->localsplus);
    /* The event takes the exception from the error indicator. */
    PyErr_SetRaisedException(Py_NewRef(exc));
    if (tj_fire_frame_event(tstate, PY_MONITORING_EVENT_EXCEPTION_HANDLED, co,
                            TJ_UNWIND_TARGET(u) / 2) < 0) {
        tstate->current_frame = caller;
        _PyEval_FrameClearAndPop(tstate, frame);
        return NULL;
    }
    PyObject *again = PyErr_GetRaisedException();
    TJ_XDECREF(again);
    tstate->current_frame = caller;
    frame->instr_ptr = code0 + TJ_UNWIND_TARGET(u) / 2;
    return _PyEval_EvalFrameDefault(tstate, frame, 0);
}

PyObject *
tj_resume_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    tj_resume *r = (tj_resume *)self;
    PyThreadState *tstate = PyThreadState_Get();
    if (r->used) {
        PyErr_SetNone(PyExc_RuntimeError);  /* it runs once (no string: no data) */
        return NULL;
    }
    r->used = 1;
    PyCodeObject *co = (PyCodeObject *)r->code;
    PyFunctionObject *func = (PyFunctionObject *)r->func;
    Py_ssize_t n = Py_SIZE(r);
    PyObject *inner = NULL;
    if (r->inner_argc >= 0) {
        /* [inner, NULL, None * argc] end the stack: the CALL's inputs */
        n -= 2 + r->inner_argc;
        inner = r->values[n];
        r->values[n] = NULL;
    }
    _PyInterpreterFrame *frame = tj_push_frame(tstate, func, co);
    if (frame == NULL) {
        /* A new data-stack chunk: let CPython push the frame (with arguments
         * that are replaced below; the callee takes no *args, **kwargs or
         * keyword-only arguments). */
        PyObject *f = (PyObject *)func;
        if (func->func_code != (PyObject *)co) {
            f = PyFunction_New((PyObject *)co, func->func_globals);
            if (f == NULL) {
                TJ_XDECREF(inner);
                return NULL;
            }
        }
        else {
            Py_INCREF(f);
        }
        int argc = co->co_argcount;
        PyObject *nones[argc + 1];
        for (int i = 0; i < argc; i++) {
            nones[i] = Py_None;
        }
        frame = _PyEvalFramePushAndInit(tstate, (PyFunctionObject *)f, NULL, nones, argc, NULL);
        if (frame == NULL) {
            TJ_XDECREF(inner);
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *old = i < co->co_nlocalsplus ? frame->localsplus[i] : NULL;
        frame->localsplus[i] = r->values[i];
        r->values[i] = NULL;
        TJ_XDECREF(old);
    }
    frame->stacktop = (int)n;
    frame->instr_ptr = _PyCode_CODE(co) + r->pc;
    frame->previous = tstate->current_frame;
    if (inner != NULL) {
        /* The frame waits at its CALL (current, as the interpreter's would)
         * while the inner callee runs, counted in the recursion depth as the
         * interpreter counts a running frame (_Py_EnterRecursivePy). */
        if (tstate->py_recursion_remaining-- <= 0 && !tstate->recursion_headroom) {
            tstate->py_recursion_remaining++;
            tstate->recursion_headroom++;
            PyErr_SetObject(PyExc_RecursionError, r->recursion_msg);
            tstate->recursion_headroom--;
            Py_DECREF(inner);
            _PyEval_FrameClearAndPop(tstate, frame);
            return NULL;
        }
        _PyInterpreterFrame *caller = tstate->current_frame;
        tstate->current_frame = frame;
        PyObject *res = PyObject_CallNoArgs(inner);
        Py_DECREF(inner);
        tstate->current_frame = caller;
        tstate->py_recursion_remaining++;
        if (res == NULL) {
            return tj_resume_fail(tstate, frame, r);
        }
        frame->localsplus[frame->stacktop++] = res;
        frame->instr_ptr = _PyCode_CODE(co) + r->next_pc;
        return _PyEval_EvalFrameDefault(tstate, frame, 0);
    }
    if (r->exc == NULL) {
        return _PyEval_EvalFrameDefault(tstate, frame, 0);
    }
    PyObject *exc = r->exc;
    r->exc = NULL;
    PyErr_SetRaisedException(exc);
    return tj_resume_fail(tstate, frame, r);
}

void
tj_resume_dealloc(PyObject *self)
{
    tj_resume *r = (tj_resume *)self;
    PyTypeObject *tp = Py_TYPE(self);
    for (Py_ssize_t i = 0; i < Py_SIZE(r); i++) {
        Py_XDECREF(r->values[i]);
    }
    Py_XDECREF(r->func);
    Py_XDECREF(r->code);
    Py_XDECREF(r->exc);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* Offsets the Python side needs to create the type: basicsize. */
int64_t
tj_resume_basicsize(void)
{
    return (int64_t)offsetof(tj_resume, values);
}

/* The version tag of a type (assigned now if it has none), 0 if it cannot
 * have one: what guard_type_version compares with. */
int64_t
tj_type_version(PyObject *tp)
{
    if (!PyUnstable_Type_AssignVersionTag((PyTypeObject *)tp)) {
        return 0;
    }
    return (int64_t)((PyTypeObject *)tp)->tp_version_tag;
}

/* Builds the resume objects of an exit inside inlined calls, innermost
 * first; each outer frame's value stack ends with the CALL inputs [inner
 * resume object, NULL, None * argc].  Returns the outermost one (new
 * reference), or NULL with MemoryError set. */
PyObject *
tj_resume_chain(uint64_t *regs, const tj_chain_desc *d)
{
    PyObject *inner = NULL;
    int64_t inner_argc = 0;
    for (int64_t k = d->nframes - 1; k >= 0; k--) {
        const tj_frame_desc *f = &d->frames[k];
        Py_ssize_t n = (Py_ssize_t)f->n + (inner != NULL ? 2 + inner_argc : 0);
        tj_resume *r = (tj_resume *)_PyObject_NewVar(d->type, n);
        if (r == NULL) {
            Py_XDECREF(inner);
            return NULL;
        }
        r->func = Py_NewRef(f->func);
        r->code = Py_NewRef(f->code);
        r->exc = NULL;
        if (inner == NULL && d->exc_reg >= 0) {
            r->exc = (PyObject *)(uintptr_t)regs[d->exc_reg];
        }
        r->pc = f->pc;
        r->unwind = f->unwind;
        r->raise_at = f->raise_at;
        r->next_pc = f->next_pc;
        r->inner_argc = inner != NULL ? inner_argc : -1;
        r->recursion_msg = d->recursion_msg;
        r->used = 0;
        Py_ssize_t i = 0;
        for (; i < f->n; i++) {
            uint64_t e = f->entries[i];
            PyObject *o;
            if ((e & 3) == 0) {
                o = NULL;
            }
            else if ((e & 3) == 3) {  /* a constant: its (aligned) address */
                o = Py_NewRef((PyObject *)(uintptr_t)(e & ~(uint64_t)3));
            }
            else {
                o = (PyObject *)(uintptr_t)regs[e >> 2];
                if ((e & 3) == 1) {
                    Py_INCREF(o);
                }
            }
            r->values[i] = o;
        }
        if (inner != NULL) {
            r->values[i++] = inner;
            r->values[i++] = NULL;
            for (int64_t a = 0; a < inner_argc; a++) {
                r->values[i++] = Py_None;
            }
        }
        inner = (PyObject *)r;
        inner_argc = f->argc;
    }
    return inner;
}

/* ---- runtime: direct calls of compiled functions --------------------------
 *
 * tj_call_py is how a trace calls a Python function (machine op call_py):
 * when the callee is a plain function whose function-entry trace is compiled
 * and no other tool watches its code, it pushes the callee's frame itself and
 * runs that trace on it, as the PY_START callback would after the
 * interpreter pushed it: no interpreter entry, no monitoring callback.  A
 * trace that leaves at the function's RETURN_VALUE or RETURN_CONST is
 * returned from here; any other exit continues the frame in the interpreter
 * (_PyEval_EvalFrameDefault from instr_ptr, as tj_resume_call does), and an
 * error exit unwinds it as the interpreter's error path would.  Anything
 * else (another callable, a recording, a tool, a deep recursion, a full data
 * stack chunk) is a plain vectorcall.  OP0: the dispatcher's tj_state. */

/* What the interpreter's error path does for `frame` (current, on the data
 * stack, instr_ptr at the failing instruction, no handler there): a
 * traceback entry, RAISE and PY_UNWIND for any tool watching, the frame
 * popped. */
ALWAYS_INLINE PyObject *
tj_call_py_fail(PyThreadState *tstate, _PyInterpreterFrame *frame, PyCodeObject *co)
{
    PyFrameObject *f = PyEval_GetFrame();
    if (f != NULL && PyTraceBack_Here(f) == 0) {
        long lasti = (long)(frame->instr_ptr - _PyCode_CODE(co));
        if (tj_fire_frame_event(tstate, PY_MONITORING_EVENT_RAISE, co, lasti) == 0) {
            tj_fire_frame_event(tstate, PY_MONITORING_EVENT_PY_UNWIND, co, lasti);
        }
    }
    tstate->current_frame = frame->previous;
    tstate->py_recursion_remaining++;
    tstate->c_recursion_remaining += 2;
    _PyEval_FrameClearAndPop(tstate, frame);
    return NULL;
}

#define TJ_CALL_PY_REFUSED (CO_VARARGS | CO_VARKEYWORDS | CO_GENERATOR | CO_COROUTINE | \
                            CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE)

/* Whether clearing a returning frame's locals frees nothing that may run
 * code: an object of a type that may have a destructor survives unless the
 * frame's slots hold all its references. */
ALWAYS_INLINE int
tj_clear_runs_nothing(_PyInterpreterFrame *frame, PyCodeObject *co)
{
    int n = co->co_nlocalsplus;
    for (int i = 0; i < n; i++) {
        PyObject *o = frame->localsplus[i];
        if (o == NULL || _Py_IsImmortal(o)) {
            continue;
        }
        PyTypeObject *tp = Py_TYPE(o);
        if (tp == &PyUnicode_Type || tp == &PyLong_Type || tp == &PyFloat_Type ||
            tp == &PyBytes_Type) {
            continue;
        }
        Py_ssize_t held = 0;
        for (int j = 0; j < n; j++) {
            held += frame->localsplus[j] == o;
        }
        if (Py_REFCNT(o) <= held) {
            return 0;
        }
    }
    return 1;
}

ALWAYS_INLINE PyObject *
tj_call_py_run(tj_state *st, PyThreadState *tstate, PyObject *callable, PyObject *const *args,
               size_t nargsf, int *pure)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (Py_TYPE(callable) != &PyFunction_Type) {
        goto vectorcall;
    }
    PyFunctionObject *func = (PyFunctionObject *)callable;
    PyCodeObject *co = (PyCodeObject *)func->func_code;
    /* Frames of functions with cells or free variables start with MAKE_CELL
     * or COPY_FREE_VARS before RESUME: the interpreter runs those. */
    if (nargs != co->co_argcount || (co->co_flags & TJ_CALL_PY_REFUSED) != 0 ||
        co->co_kwonlyargcount != 0 || co->co_ncellvars != 0 || co->co_nfreevars != 0 ||
        st->busy || tstate->c_tracefunc != NULL || tstate->c_profilefunc != NULL) {
        goto vectorcall;
    }
    tj_slot *slot = tj_lookup(st, (PyObject *)co, 0);
    if (slot == NULL) {
        goto vectorcall;
    }
    tj_trace *t = slot->trace;
    /* A negative countdown: a function too small for PY_START to count (its
     * event is disabled) that traces want to call directly; recorded when
     * it reaches zero. */
    if (t == NULL && (slot->countdown >= 0 || ++slot->countdown < 0 ||
                      tstate->py_recursion_remaining < TJ_PY_FRAMES_NEEDED)) {
        goto vectorcall;
    }
    /* The interpreter raises RecursionError (and reports tools' events). */
    if (tstate->py_recursion_remaining <= 1 || tstate->c_recursion_remaining <= 2 ||
        tj_other_tools(tstate, co) || (t != NULL && tj_inlined_watched(t->inlined))) {
        goto vectorcall;
    }
    _PyInterpreterFrame *frame = tj_push_frame(tstate, func, co);
    if (frame == NULL) {
        goto vectorcall;  /* a new data-stack chunk: the interpreter's */
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        frame->localsplus[i] = Py_NewRef(args[i]);
    }
    frame->previous = tstate->current_frame;
    tstate->current_frame = frame;
    /* Counted as the interpreter counts a running frame (and its C stack). */
    tstate->py_recursion_remaining--;
    tstate->c_recursion_remaining -= 2;
    if (t == NULL) {
        /* The fallback starts recording this frame at its RESUME, as it would
         * from PY_START (with events silenced as in a callback); the
         * interpreter then runs it. */
        PyObject *argv[2] = {(PyObject *)co, _PyLong_GetZero()};
        tstate->tracing++;
        PyObject *res = PyObject_Vectorcall(st->fallback, argv, 2, NULL);
        tstate->tracing--;
        if (res == NULL) {
            return tj_call_py_fail(tstate, frame, co);
        }
        Py_DECREF(res);
        goto interpret;
    }
    st->direct_calls++;
    tj_trace *last;
    if (tj_run(st, tstate, frame, co, t, &last) < 0) {
        return tj_call_py_fail(tstate, frame, co);
    }
    _Py_CODEUNIT *ip = frame->instr_ptr;
    int opcode = ip->op.code;
    if ((opcode == RETURN_VALUE || opcode == RETURN_CONST) && !tj_other_tools(tstate, co)) {
        /* the trace entered, alone (no link followed, no Python code told) */
        *pure = t->pure && last == t && tj_clear_runs_nothing(frame, co);
        /* What RETURN_VALUE / RETURN_CONST do (no tool wants PY_RETURN). */
        PyObject *res;
        if (opcode == RETURN_VALUE) {
            res = frame->localsplus[--frame->stacktop];
            frame->localsplus[frame->stacktop] = NULL;
        }
        else {
            res = Py_NewRef(PyTuple_GET_ITEM(co->co_consts, ip->op.arg));
        }
        tstate->py_recursion_remaining++;
        tstate->c_recursion_remaining += 2;
        tstate->current_frame = frame->previous;
        _PyEval_FrameClearAndPop(tstate, frame);
        return res;
    }
interpret:
    /* The interpreter links the frame and counts it itself. */
    tstate->py_recursion_remaining++;
    tstate->c_recursion_remaining += 2;
    tstate->current_frame = frame->previous;
    return _PyEval_EvalFrameDefault(tstate, frame, 0);
vectorcall:
    return vectorcall_tstate(tstate, callable, args, nargsf);
}

PyObject *
tj_call_py(PyThreadState *tstate, PyObject *callable, PyObject *const *args, size_t nargsf)
{
    tj_state *st = (tj_state *)(uintptr_t)OP(0);
    int pure = 0;
    PyObject *res = tj_call_py_run(st, tstate, callable, args, nargsf, &pure);
    /* Set last: calls made meanwhile set it too. */
    st->impure = !pure;
    return res;
}

typedef PyObject *(*tj_call_py_fn)(PyThreadState *, PyObject *, PyObject *const *, size_t);

/* call_vector of a callable recorded as a Python function: R0 =
 * tj_call_py(R1 block: callable, arguments; OP2 arguments); OP3 the
 * address of tj_call_py (loaded with the dispatcher's state). */
STENCIL(call_py)
{
    uint64_t *base = &R(1);
    PyObject *r = ((tj_call_py_fn)(uintptr_t)OP_OPAQUE(3))(
        tstate, (PyObject *)(uintptr_t)base[0], (PyObject *const *)&base[1],
        (size_t)OP(2) | PY_VECTORCALL_ARGUMENTS_OFFSET);
    if (r != NULL) {
        SET_OBJ(0, r);
        CONTINUE();
    }
    ERROR();
}

/* After a call_py of a function whose trace was pure when the caller was
 * compiled: exit (after the call, its result pushed) unless that trace ran,
 * and only it, to its return (tj_state.impure at OP0), so the caller's
 * checks still hold. */
STENCIL(guard_pure_call)
{
    if (LIKELY(!*(volatile uint64_t *)(uintptr_t)OP(0))) {
        CONTINUE();
    }
    EXIT();
}
