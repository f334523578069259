/* Common definitions for tracejit's copy-and-patch stencils.
 *
 * Compiled with clang for x86_64-linux-gnu against the CPython 3.13 headers
 * with -DPy_BUILD_CORE (see tracejit/backend/build.py for the exact flags).
 *
 * Every op stencil is a preserve_none function
 *     int op_NAME(_PyInterpreterFrame *frame, uint64_t *regs, PyThreadState *tstate)
 * that continues with a musttail call into one of the hole symbols below.
 * The loader (tracejit/backend/assembler.py) patches the holes:
 *   _JIT_CONTINUE  the next instruction (a trailing `jmp` to it is dropped)
 *   _JIT_TARGET    a label (loop back-edge)
 *   _JIT_EXIT      a guard's exit label
 *   _JIT_ERROR     the error-exit label (an exception is set)
 *   _JIT_OPERAND0..3  64-bit operand values (the *address* of the symbol is
 *                  the value; -mcmodel=medium -mlarge-data-threshold=0 makes
 *                  these movabs imm64 / R_X86_64_64 relocations)
 *   _JIT_OFFSET0..3  operand k times 8 as a 32-bit displacement (register
 *                  and frame-slot offsets): declared in an explicit section,
 *                  which clang treats as small data despite the threshold, so
 *                  `regs + offset` folds into one addressing mode
 *                  (R_X86_64_32S / R_X86_64_32) instead of movabs + index
 * Hole symbols are hidden so that jumps to them are direct rel32 jumps;
 * C-API functions keep default visibility and, with -fno-plt, are called
 * through the per-trace GOT.
 */
#ifndef TRACEJIT_STENCIL_H
#define TRACEJIT_STENCIL_H

/* Python.h first: pyconfig.h sets the feature macros (_GNU_SOURCE). */
#include "Python.h"
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "opcode_ids.h"
#include "pycore_call.h"
#include "pycore_ceval.h"
#include "pycore_code.h"
#include "pycore_dict.h"
#include "pycore_frame.h"
#include "pycore_function.h"
#include "pycore_interp.h"
#include "pycore_list.h"
#include "pycore_long.h"
#include "pycore_range.h"
#include "pycore_tuple.h"
#include "pycore_unicodeobject.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define PRESERVE_NONE __attribute__((preserve_none))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef PRESERVE_NONE int (*jit_func)(_PyInterpreterFrame *, uint64_t *, PyThreadState *);

extern HIDDEN PRESERVE_NONE int _JIT_CONTINUE(_PyInterpreterFrame *, uint64_t *, PyThreadState *);
extern HIDDEN PRESERVE_NONE int _JIT_TARGET(_PyInterpreterFrame *, uint64_t *, PyThreadState *);
extern HIDDEN PRESERVE_NONE int _JIT_EXIT(_PyInterpreterFrame *, uint64_t *, PyThreadState *);
extern HIDDEN PRESERVE_NONE int _JIT_ERROR(_PyInterpreterFrame *, uint64_t *, PyThreadState *);

extern HIDDEN char _JIT_OPERAND0[];
extern HIDDEN char _JIT_OPERAND1[];
extern HIDDEN char _JIT_OPERAND2[];
extern HIDDEN char _JIT_OPERAND3[];

#define OFFSET_SYMBOL(k) \
    extern HIDDEN char _JIT_OFFSET##k[8] __attribute__((section(".tj_offset")));
OFFSET_SYMBOL(0)
OFFSET_SYMBOL(1)
OFFSET_SYMBOL(2)
OFFSET_SYMBOL(3)

/* Operand k times 8 (a byte offset that fits a displacement). */
#define OFF(k) ((uintptr_t)_JIT_OFFSET##k)

/* Operand k as a 64-bit value. */
#define OP(k) ((uint64_t)(uintptr_t)_JIT_OPERAND##k)
/* Operand k as a value the compiler cannot see through: used for function
 * pointers, which clang would otherwise turn into a direct rel32 call to the
 * (hidden) hole symbol. */
#define OP_OPAQUE(k) opaque_u64(OP(k))
ALWAYS_INLINE uint64_t
opaque_u64(uint64_t v)
{
    __asm__("" : "+r"(v));
    return v;
}

/* Register named by operand k. */
#define R(k) (*(uint64_t *)((char *)regs + OFF(k)))
/* Frame slot (localsplus index) named by operand k. */
#define SLOT(k) (*(PyObject **)((char *)frame->localsplus + OFF(k)))
#define R_OBJ(k) ((PyObject *)(uintptr_t)R(k))
#define R_I64(k) ((int64_t)R(k))
#define SET_OBJ(k, v) (R(k) = (uint64_t)(uintptr_t)(v))
#define SET_I64(k, v) (R(k) = (uint64_t)(int64_t)(v))

#define STENCIL(NAME) \
    PRESERVE_NONE int op_##NAME(_PyInterpreterFrame *frame, uint64_t *regs, \
                                PyThreadState *tstate)

#define CONTINUE() __attribute__((musttail)) return _JIT_CONTINUE(frame, regs, tstate)
#define JUMP_TARGET() __attribute__((musttail)) return _JIT_TARGET(frame, regs, tstate)
#define EXIT() __attribute__((musttail)) return _JIT_EXIT(frame, regs, tstate)
#define ERROR() __attribute__((musttail)) return _JIT_ERROR(frame, regs, tstate)

ALWAYS_INLINE double
bits_to_double(uint64_t bits)
{
    union { uint64_t u; double d; } v;
    v.u = bits;
    return v.d;
}

ALWAYS_INLINE uint64_t
double_to_bits(double d)
{
    union { uint64_t u; double d; } v;
    v.d = d;
    return v.u;
}

/* _PyObject_VectorcallTstate without its memcpy (-fno-builtin would make that
 * a libc call): the thread state is at hand, where PyObject_Vectorcall looks
 * it up in thread-local storage (a __tls_get_addr call from libpython). */
ALWAYS_INLINE PyObject *
vectorcall_tstate(PyThreadState *tstate, PyObject *callable, PyObject *const *args,
                  size_t nargsf)
{
    PyTypeObject *tp = Py_TYPE(callable);
    if (!PyType_HasFeature(tp, Py_TPFLAGS_HAVE_VECTORCALL)) {
        return _PyObject_MakeTpCall(tstate, callable, args, PyVectorcall_NARGS(nargsf), NULL);
    }
    vectorcallfunc func = *(vectorcallfunc *)((char *)callable + tp->tp_vectorcall_offset);
    if (func == NULL) {
        return _PyObject_MakeTpCall(tstate, callable, args, PyVectorcall_NARGS(nargsf), NULL);
    }
    return _Py_CheckFunctionResult(tstate, callable, func(callable, args, nargsf, NULL), NULL);
}

#define R_F64(k) bits_to_double(R(k))
#define SET_F64(k, v) (R(k) = double_to_bits(v))

#endif /* TRACEJIT_STENCIL_H */
