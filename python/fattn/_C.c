/* fattn._C: the CPython binding of libfattn.
 *
 * Deliberately small: the Python layer (fattn/_sdpa.py) turns torch tensors
 * and NumPy arrays into 4-D views (data pointer, dtype, dims, strides in
 * elements) without copying, and this file hands them to fattn_sdpa with the
 * GIL released. No NumPy or torch headers: the extension builds against the
 * Python headers alone, and the same binary serves both. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "fattn.h"

/* ---- errors --------------------------------------------------------------------- */

/* fattn's status as the Python exception its users expect: bad arguments and
 * shapes are ValueError, out of memory MemoryError, the rest RuntimeError
 * (the Python layer raises TypeError for dtypes before calling). */
static PyObject *raise_status(const char *what, fattn_status st, const char *msg) {
  PyObject *type = PyExc_RuntimeError;
  switch (st) {
  case FATTN_ERROR_INVALID_ARGUMENT:
  case FATTN_ERROR_SHAPE_MISMATCH:
  case FATTN_ERROR_OVERFLOW: type = PyExc_ValueError; break;
  case FATTN_ERROR_OUT_OF_MEMORY: type = PyExc_MemoryError; break;
  default: break;
  }
  PyErr_Format(type, "%s: %s: %s", what, fattn_status_string(st), msg);
  return NULL;
}

/* ---- Context -------------------------------------------------------------------- */

typedef struct {
  PyObject_HEAD fattn_context *ctx;
  int num_threads;
} ContextObject;

static const char *const backend_names[] = {"auto",   "reference", "scalar", "avx2",
                                            "avx512", "neon",      "onednn", NULL};
static const char *const pin_names[] = {"default", "none", "cores", "numa", NULL};
/* fattn_tile_policy's order */
static const char *const tile_names[] = {"default", "auto", "off", "bf16", NULL};

static int lookup_name(const char *what, const char *name, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return i;
  PyErr_Format(PyExc_ValueError, "unknown %s '%s'", what, name);
  return -1;
}

static int Context_init(ContextObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"num_threads",   "isa",   "pin", "block_keys",
                           "block_queries", "tiles", NULL};
  int num_threads = 0;
  const char *isa = "auto", *pin = "default", *tiles = "default";
  long long block_keys = 0, block_queries = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|$issLLs", kwlist, &num_threads, &isa, &pin,
                                   &block_keys, &block_queries, &tiles))
    return -1;
  if (num_threads < 0) {
    PyErr_SetString(PyExc_ValueError, "num_threads must be >= 0 (0 = the default)");
    return -1;
  }
  int b = lookup_name("isa", isa, backend_names), p = lookup_name("pin", pin, pin_names);
  if (b < 0 || p < 0) return -1;
  const int t = lookup_name("tiles", tiles, tile_names);
  if (t < 0) return -1;
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = num_threads;
  o.isa_cap = (fattn_backend)b;
  o.pin = (fattn_pin_policy)p;
  o.block_keys = block_keys;
  o.block_queries = block_queries;
  o.tiles = (fattn_tile_policy)t;
  fattn_context *ctx = NULL;
  fattn_status st = fattn_context_create(&o, &ctx);
  if (st != FATTN_SUCCESS) {
    raise_status("fattn_context_create", st, fattn_last_error());
    return -1;
  }
  if (self->ctx) fattn_context_destroy(self->ctx);
  self->ctx = ctx;
  self->num_threads = num_threads;
  return 0;
}

static void Context_dealloc(ContextObject *self) {
  if (self->ctx) fattn_context_destroy(self->ctx);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *info_dict(fattn_context *ctx) {
  fattn_runtime_info in;
  fattn_status st = fattn_get_runtime_info(ctx, &in);
  if (st != FATTN_SUCCESS) return raise_status("fattn_get_runtime_info", st, fattn_last_error());
  return Py_BuildValue(
      "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:L,s:L,s:L,s:s,s:s,s:O,s:O,s:O,s:s,s:s,s:s,s:s}",
      "version", fattn_version(), "isa_detected", in.isa_detected, "isa_best",
      fattn_backend_name(in.isa_best), "isa_selected", fattn_backend_name(in.isa_selected),
      "num_threads", in.num_threads, "physical_cores", in.physical_cores, "logical_cpus",
      in.logical_cpus, "numa_nodes", in.numa_nodes, "l1d_bytes", (long long)in.l1d_bytes,
      "l2_bytes", (long long)in.l2_bytes, "l3_bytes", (long long)in.l3_bytes, "pin",
      pin_names[in.pin], "binding", in.binding, "has_openmp", in.has_openmp ? Py_True : Py_False,
      "has_hwloc", in.has_hwloc ? Py_True : Py_False, "has_onednn",
      in.has_onednn ? Py_True : Py_False, "onednn_version", in.onednn_version, "notes", in.notes,
      "tile_engine", in.tile_engine, "tiles", tile_names[in.tiles]);
}

static PyObject *Context_runtime_info(ContextObject *self, PyObject *unused) {
  (void)unused;
  return info_dict(self->ctx);
}

static PyObject *Context_repr(ContextObject *self) {
  return PyUnicode_FromFormat("fattn.Context(num_threads=%d)", self->num_threads);
}

static PyMethodDef Context_methods[] = {
    {"runtime_info", (PyCFunction)Context_runtime_info, METH_NOARGS,
     "runtime_info() -> dict: version, ISA, threads, pinning of this context."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "fattn.Context",
    .tp_basicsize = sizeof(ContextObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Context(*, num_threads=0, isa='auto', pin='default', block_keys=0, "
              "block_queries=0, tiles='default')\n\nThread count, kernel table, pinning and "
              "matrix-engine policy ('auto', 'off', 'bf16'; 'default' = FATTN_TILES) for fattn "
              "calls (fattn_context). 0 threads = FATTN_NUM_THREADS, else the OpenMP default.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Context_init,
    .tp_dealloc = (destructor)Context_dealloc,
    .tp_repr = (reprfunc)Context_repr,
    .tp_methods = Context_methods,
};

/* ---- sdpa ----------------------------------------------------------------------- */

/* A view as the Python layer passes it: (ptr, dtype, shape, strides), shape and
 * strides tuples (torch.Size is one) of 2 to 4 entries, strides in elements;
 * (L, E) becomes [1, 1, L, E] and (N, L, E) [N, 1, L, E]. */
static int parse_view(PyObject *o, const char *name, fattn_tensor *t) {
  if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 4) {
    PyErr_Format(PyExc_TypeError, "%s: expected a (ptr, dtype, shape, strides) view", name);
    return -1;
  }
  PyObject *shape = PyTuple_GET_ITEM(o, 2), *strides = PyTuple_GET_ITEM(o, 3);
  if (!PyTuple_Check(shape) || !PyTuple_Check(strides)) {
    PyErr_Format(PyExc_TypeError, "%s: shape and strides must be tuples", name);
    return -1;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(shape);
  if (n < 2 || n > 4 || PyTuple_GET_SIZE(strides) != n) {
    PyErr_Format(PyExc_ValueError, "%s: a view of %zd dims with %zd strides (2 to 4 dims)", name, n,
                 PyTuple_GET_SIZE(strides));
    return -1;
  }
  t->data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(o, 0));
  t->dtype = (fattn_dtype)PyLong_AsLong(PyTuple_GET_ITEM(o, 1));
  for (int i = 0; i < 4; i++) {
    t->dims[i] = 1;
    t->strides[i] = 0;
  }
  /* the last two dims, then the batch dim of a 3-D view or both of a 4-D one */
  static const int at[5][4] = {{0}, {0}, {2, 3}, {0, 2, 3}, {0, 1, 2, 3}};
  const int *pos = at[n];
  for (Py_ssize_t i = 0; i < n; i++) {
    t->dims[pos[i]] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
    t->strides[pos[i]] = PyLong_AsLongLong(PyTuple_GET_ITEM(strides, i));
  }
  return PyErr_Occurred() ? -1 : 0;
}

/* One call's arguments, parsed from the 11 positional arguments of sdpa. */
typedef struct {
  fattn_tensor q, k, v, out, mask, lse;
  fattn_sdpa_params p;
  fattn_context *ctx;
} call_args;

static int parse_call(PyObject *const *args, call_args *c) {
  fattn_sdpa_params_init(&c->p);
  if (parse_view(args[0], "q", &c->q) || parse_view(args[1], "k", &c->k) ||
      parse_view(args[2], "v", &c->v) || parse_view(args[3], "out", &c->out))
    return -1;
  if (args[4] != Py_None) {
    if (parse_view(args[4], "attn_mask", &c->mask)) return -1;
    c->p.attn_mask = &c->mask;
  }
  if (args[5] != Py_None) {
    if (parse_view(args[5], "lse", &c->lse)) return -1;
    c->p.lse = &c->lse;
  }
  c->p.kv_lens = (const int32_t *)PyLong_AsVoidPtr(args[6]);
  c->p.scale = (float)PyFloat_AsDouble(args[7]);
  c->p.causal = (fattn_causal)PyLong_AsLong(args[8]);
  c->p.backend = (fattn_backend)PyLong_AsLong(args[9]);
  if (PyErr_Occurred()) return -1;
  c->ctx = NULL;
  if (args[10] != Py_None) {
    if (!PyObject_TypeCheck(args[10], &ContextType)) {
      PyErr_SetString(PyExc_TypeError, "context must be a fattn.Context");
      return -1;
    }
    c->ctx = ((ContextObject *)args[10])->ctx;
  }
  return 0;
}

/* fattn_sdpa with the GIL released; -1 with the exception set on failure. */
static int run_sdpa(fattn_context *ctx, const fattn_tensor *q, const fattn_tensor *k,
                    const fattn_tensor *v, fattn_tensor *out, const fattn_sdpa_params *p) {
  fattn_status st;
  const char *msg = "";
  Py_BEGIN_ALLOW_THREADS;
  st = fattn_sdpa(ctx, q, k, v, out, p);
  if (st != FATTN_SUCCESS) msg = fattn_last_error(); /* thread-local: read on this thread */
  Py_END_ALLOW_THREADS;
  if (st == FATTN_SUCCESS) return 0;
  raise_status("fattn_sdpa", st, msg);
  return -1;
}

PyDoc_STRVAR(sdpa_doc,
             "sdpa(q, k, v, out, mask, lse, kv_lens_ptr, scale, causal, backend, context)\n\n"
             "Low level: views are (ptr, dtype, shape, strides) tuples; mask / lse / context "
             "may be None, kv_lens_ptr 0. Use fattn.scaled_dot_product_attention instead.");

static PyObject *sdpa(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 11) {
    PyErr_Format(PyExc_TypeError, "sdpa takes 11 arguments (%zd given)", nargs);
    return NULL;
  }
  call_args c;
  if (parse_call(args, &c)) return NULL;
  if (run_sdpa(c.ctx, &c.q, &c.k, &c.v, &c.out, &c.p)) return NULL;
  Py_RETURN_NONE;
}

PyDoc_STRVAR(time_sdpa_doc, "_time_sdpa(<sdpa's 11 arguments>, reps) -> list of seconds\n\n"
                            "For the benchmark: the same fattn_sdpa call `reps` times from C, each "
                            "timed alone (CLOCK_MONOTONIC): the C side of the binding's overhead.");

static PyObject *time_sdpa(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 12) {
    PyErr_Format(PyExc_TypeError, "_time_sdpa takes 12 arguments (%zd given)", nargs);
    return NULL;
  }
  call_args c;
  if (parse_call(args, &c)) return NULL;
  Py_ssize_t reps = PyLong_AsSsize_t(args[11]);
  if (reps < 1) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "reps must be >= 1");
    return NULL;
  }
  double *sec = PyMem_RawMalloc((size_t)reps * sizeof(double));
  if (!sec) return PyErr_NoMemory();
  fattn_status st = FATTN_SUCCESS;
  const char *msg = "";
  Py_BEGIN_ALLOW_THREADS;
  for (Py_ssize_t i = 0; i < reps && st == FATTN_SUCCESS; i++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = fattn_sdpa(c.ctx, &c.q, &c.k, &c.v, &c.out, &c.p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sec[i] = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  }
  if (st != FATTN_SUCCESS) msg = fattn_last_error();
  Py_END_ALLOW_THREADS;
  PyObject *list = st == FATTN_SUCCESS ? PyList_New(reps) : NULL;
  for (Py_ssize_t i = 0; list && i < reps; i++) {
    PyObject *f = PyFloat_FromDouble(sec[i]);
    if (!f)
      Py_CLEAR(list);
    else
      PyList_SET_ITEM(list, i, f);
  }
  PyMem_RawFree(sec);
  if (st != FATTN_SUCCESS) return raise_status("fattn_sdpa", st, msg);
  return list;
}

/* ---- torch tensors, read without torch's headers ------------------------------------ */

/* torch's dtype objects for F32, F16, BF16 and bool (U8), and torch.strided,
 * handed over by fattn/_sdpa.py once torch is imported. */
static PyObject *torch_dtypes[4], *torch_strided, *torch_empty;
static PyObject *s_dtype, *s_is_cpu, *s_layout, *s_is_nested, *s_data_ptr, *s_stride, *s_shape;

static PyObject *set_torch(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *d[4], *strided, *empty;
  if (!PyArg_ParseTuple(args, "OOOOOO", &d[0], &d[1], &d[2], &d[3], &strided, &empty)) return NULL;
  for (int i = 0; i < 4; i++) {
    Py_INCREF(d[i]);
    Py_XSETREF(torch_dtypes[i], d[i]);
  }
  Py_INCREF(strided);
  Py_XSETREF(torch_strided, strided);
  Py_INCREF(empty);
  Py_XSETREF(torch_empty, empty);
  Py_RETURN_NONE;
}

/* torch_view(t) -> (ptr, dtype, shape, strides) for a CPU, strided, non-nested
 * tensor of one of fattn's dtypes; None for anything else (the Python layer
 * then says what is wrong). The same attributes fattn/_sdpa.py would read,
 * without the interpreter between them: the binding's overhead per call. */
static PyObject *torch_view(PyObject *self, PyObject *t) {
  (void)self;
  PyObject *dtype = NULL, *flag = NULL, *ptr = NULL, *stride = NULL, *shape = NULL;
  PyObject *res = NULL;
  int code = -1;
  if (!torch_strided) Py_RETURN_NONE;
  if (!(dtype = PyObject_GetAttr(t, s_dtype))) goto done;
  for (int i = 0; i < 4; i++)
    if (dtype == torch_dtypes[i]) code = i;
  if (code < 0) goto none;
  if (!(flag = PyObject_GetAttr(t, s_is_cpu))) goto done;
  if (flag != Py_True) goto none;
  Py_CLEAR(flag);
  if (!(flag = PyObject_GetAttr(t, s_layout))) goto done;
  if (flag != torch_strided) goto none;
  Py_CLEAR(flag);
  if (!(flag = PyObject_GetAttr(t, s_is_nested))) goto done;
  if (flag != Py_False) goto none;
  if (!(ptr = PyObject_CallMethodNoArgs(t, s_data_ptr))) goto done;
  if (!(stride = PyObject_CallMethodNoArgs(t, s_stride))) goto done;
  if (!(shape = PyObject_GetAttr(t, s_shape))) goto done;
  PyObject *c = PyLong_FromLong(code);
  if (c) res = PyTuple_Pack(4, ptr, c, shape, stride);
  Py_XDECREF(c);
  goto done;
none:
  res = Py_None;
  Py_INCREF(res);
done:
  Py_XDECREF(dtype);
  Py_XDECREF(flag);
  Py_XDECREF(ptr);
  Py_XDECREF(stride);
  Py_XDECREF(shape);
  return res;
}

/* ---- the common call in one step ----------------------------------------------------- */

/* A 4-D torch tensor of a floating fattn dtype as a fattn_tensor, reading the
 * same attributes as torch_view; 1 = done, 0 = not such a tensor (no error
 * set), -1 = an error from torch. */
static int torch_tensor4(PyObject *t, fattn_tensor *out, PyObject **dtype_out) {
  PyObject *dtype = NULL, *flag = NULL, *shape = NULL, *stride = NULL, *ptr = NULL;
  int rc = -1, code = -1;
  if (!(dtype = PyObject_GetAttr(t, s_dtype))) goto done;
  for (int i = 0; i < 3; i++)
    if (dtype == torch_dtypes[i]) code = i;
  rc = 0;
  if (code < 0) goto done;
  rc = -1;
  if (!(flag = PyObject_GetAttr(t, s_is_cpu))) goto done;
  rc = 0;
  if (flag != Py_True) goto done;
  rc = -1;
  Py_CLEAR(flag);
  if (!(flag = PyObject_GetAttr(t, s_layout))) goto done;
  rc = 0;
  if (flag != torch_strided) goto done;
  rc = -1;
  Py_CLEAR(flag);
  if (!(flag = PyObject_GetAttr(t, s_is_nested))) goto done;
  rc = 0;
  if (flag != Py_False) goto done;
  rc = -1;
  if (!(shape = PyObject_GetAttr(t, s_shape))) goto done;
  rc = 0;
  if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != 4) goto done;
  rc = -1;
  if (!(stride = PyObject_CallMethodNoArgs(t, s_stride))) goto done;
  if (!(ptr = PyObject_CallMethodNoArgs(t, s_data_ptr))) goto done;
  if (!PyTuple_Check(stride) || PyTuple_GET_SIZE(stride) != 4) {
    rc = 0;
    goto done;
  }
  out->data = PyLong_AsVoidPtr(ptr);
  out->dtype = (fattn_dtype)code;
  for (int i = 0; i < 4; i++) {
    out->dims[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
    out->strides[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(stride, i));
  }
  rc = PyErr_Occurred() ? -1 : 1;
done:
  if (rc == 1) {
    *dtype_out = dtype;
    dtype = NULL;
  }
  Py_XDECREF(dtype);
  Py_XDECREF(flag);
  Py_XDECREF(shape);
  Py_XDECREF(stride);
  Py_XDECREF(ptr);
  return rc;
}

PyDoc_STRVAR(sdpa_torch4_doc,
             "_sdpa_torch4(query, key, value, is_causal, scale, enable_gqa, context, out)\n\n"
             "scaled_dot_product_attention's common call in one step: 4-D CPU torch tensors "
             "of one floating dtype, no mask; out None (a fresh output) or such a tensor of "
             "the result's shape and dtype. Returns NotImplemented for anything else (the "
             "Python layer then takes the call and says what is wrong).");

static PyObject *sdpa_torch4(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 8) {
    PyErr_Format(PyExc_TypeError, "_sdpa_torch4 takes 8 arguments (%zd given)", nargs);
    return NULL;
  }
  if (!torch_empty || (args[6] != Py_None && !PyObject_TypeCheck(args[6], &ContextType)))
    Py_RETURN_NOTIMPLEMENTED;
  double scale = 0.0; /* fattn's default: 1/sqrt(E) */
  if (args[4] != Py_None) {
    if (!PyFloat_CheckExact(args[4]) && !PyLong_CheckExact(args[4])) Py_RETURN_NOTIMPLEMENTED;
    scale = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      Py_RETURN_NOTIMPLEMENTED;
    }
    /* not finite, or 0 / out of range in float: the Python layer raises */
    if (!(fabs(scale) <= FLT_MAX) || (float)scale == 0.0f) Py_RETURN_NOTIMPLEMENTED;
  }
  const int causal = PyObject_IsTrue(args[3]), gqa = PyObject_IsTrue(args[5]);
  if (causal < 0 || gqa < 0) return NULL;
  fattn_tensor t[4];
  PyObject *dt[4] = {NULL, NULL, NULL, NULL}, *res = Py_NotImplemented;
  Py_INCREF(res);
  const int given = args[7] != Py_None;
  for (int i = 0; i < 3 + given; i++) {
    const int r = torch_tensor4(args[i == 3 ? 7 : i], &t[i], &dt[i]);
    if (r < 0) Py_CLEAR(res);
    if (r <= 0) goto done;
  }
  /* PyTorch's shape rules, as the Python layer checks them (it raises) */
  const int64_t *q = t[0].dims, *k = t[1].dims, *v = t[2].dims;
  if (dt[1] != dt[0] || dt[2] != dt[0] || q[0] != k[0] || q[3] != k[3] || k[0] != v[0] ||
      k[1] != v[1] || k[2] != v[2])
    goto done;
  if (q[1] != k[1] && (k[1] < 1 || q[1] % k[1] || !(gqa || k[1] == 1))) goto done;
  PyObject *o;
  if (given) {
    const int64_t *d = t[3].dims;
    if (dt[3] != dt[0] || d[0] != q[0] || d[1] != q[1] || d[2] != q[2] || d[3] != v[3]) goto done;
    o = args[7];
    Py_INCREF(o);
    goto call;
  }
  PyObject *shape =
      Py_BuildValue("(LLLL)", (long long)q[0], (long long)q[1], (long long)q[2], (long long)v[3]);
  PyObject *kw = shape ? Py_BuildValue("{s:O}", "dtype", dt[0]) : NULL;
  o = kw ? PyObject_Call(torch_empty, shape, kw) : NULL;
  Py_XDECREF(shape);
  Py_XDECREF(kw);
  PyObject *ptr = o ? PyObject_CallMethodNoArgs(o, s_data_ptr) : NULL;
  if (!ptr) {
    Py_XDECREF(o);
    Py_CLEAR(res);
    goto done;
  }
  t[3] = (fattn_tensor){.data = PyLong_AsVoidPtr(ptr),
                        .dtype = t[0].dtype,
                        .dims = {q[0], q[1], q[2], v[3]},
                        .strides = {q[1] * q[2] * v[3], q[2] * v[3], v[3], 1}};
  Py_DECREF(ptr);
call:;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  p.scale = (float)scale;
  p.causal = causal ? FATTN_CAUSAL_TOP_LEFT : FATTN_CAUSAL_NONE;
  fattn_context *ctx = args[6] == Py_None ? NULL : ((ContextObject *)args[6])->ctx;
  Py_DECREF(res);
  res = o;
  if (run_sdpa(ctx, &t[0], &t[1], &t[2], &t[3], &p)) Py_CLEAR(res);
done:
  for (int i = 0; i < 4; i++)
    Py_XDECREF(dt[i]);
  return res;
}

static PyObject *runtime_info(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return info_dict(NULL);
}

static PyMethodDef methods[] = {
    {"sdpa", (PyCFunction)(void (*)(void))sdpa, METH_FASTCALL, sdpa_doc},
    {"_sdpa_torch4", (PyCFunction)(void (*)(void))sdpa_torch4, METH_FASTCALL, sdpa_torch4_doc},
    {"_time_sdpa", (PyCFunction)(void (*)(void))time_sdpa, METH_FASTCALL, time_sdpa_doc},
    {"_set_torch", set_torch, METH_VARARGS,
     "_set_torch(float32, float16, bfloat16, bool, strided, empty): torch's objects, once "
     "imported."},
    {"torch_view", torch_view, METH_O,
     "torch_view(t) -> (ptr, dtype, shape, strides), or None if fattn cannot read t."},
    {"runtime_info", runtime_info, METH_NOARGS, "runtime_info() -> dict for the default context."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "fattn._C",
                                    .m_doc = "The C binding of libfattn (see fattn).", .m_size = -1,
                                    .m_methods = methods};

PyMODINIT_FUNC PyInit__C(void);
PyMODINIT_FUNC PyInit__C(void) {
  if (PyType_Ready(&ContextType) < 0) return NULL;
  struct {
    PyObject **s;
    const char *name;
  } names[] = {{&s_dtype, "dtype"},         {&s_is_cpu, "is_cpu"},     {&s_layout, "layout"},
               {&s_is_nested, "is_nested"}, {&s_data_ptr, "data_ptr"}, {&s_stride, "stride"},
               {&s_shape, "shape"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!*names[i].s && !(*names[i].s = PyUnicode_InternFromString(names[i].name))) return NULL;
  PyObject *m = PyModule_Create(&module);
  if (!m) return NULL;
  Py_INCREF(&ContextType);
  if (PyModule_AddObject(m, "Context", (PyObject *)&ContextType) < 0 ||
      PyModule_AddStringConstant(m, "__version__", fattn_version()) < 0) {
    Py_DECREF(&ContextType);
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
