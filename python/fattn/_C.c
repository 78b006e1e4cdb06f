/* fattn._C: the CPython binding of libfattn.
 *
 * Deliberately small: the Python layer (fattn/_sdpa.py) turns torch tensors
 * and NumPy arrays into 4-D views (data pointer, dtype, dims, strides in
 * elements) without copying, and this file hands them to fattn_sdpa with the
 * GIL released. No NumPy or torch headers: the extension builds against the
 * Python headers alone, and the same binary serves both. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

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

static const char *const backend_names[] = {"auto", "reference", "scalar", "avx2",
                                            "avx512", "neon", "onednn", NULL};
static const char *const pin_names[] = {"default", "none", "cores", "numa", NULL};

static int lookup_name(const char *what, const char *name, const char *const *names) {
  for (int i = 0; names[i]; i++)
    if (strcmp(name, names[i]) == 0) return i;
  PyErr_Format(PyExc_ValueError, "unknown %s '%s'", what, name);
  return -1;
}

static int Context_init(ContextObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"num_threads", "isa", "pin", "block_keys", "block_queries", NULL};
  int num_threads = 0;
  const char *isa = "auto", *pin = "default";
  long long block_keys = 0, block_queries = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|$issLL", kwlist, &num_threads, &isa, &pin,
                                   &block_keys, &block_queries))
    return -1;
  if (num_threads < 0) {
    PyErr_SetString(PyExc_ValueError, "num_threads must be >= 0 (0 = the default)");
    return -1;
  }
  int b = lookup_name("isa", isa, backend_names), p = lookup_name("pin", pin, pin_names);
  if (b < 0 || p < 0) return -1;
  fattn_context_options o;
  fattn_context_options_init(&o);
  o.num_threads = num_threads;
  o.isa_cap = (fattn_backend)b;
  o.pin = (fattn_pin_policy)p;
  o.block_keys = block_keys;
  o.block_queries = block_queries;
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
      "{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:L,s:L,s:L,s:s,s:s,s:O,s:O,s:O,s:s,s:s}", "version",
      fattn_version(), "isa_detected", in.isa_detected, "isa_best", fattn_backend_name(in.isa_best),
      "isa_selected", fattn_backend_name(in.isa_selected), "num_threads", in.num_threads,
      "physical_cores", in.physical_cores, "logical_cpus", in.logical_cpus, "numa_nodes",
      in.numa_nodes, "l1d_bytes", (long long)in.l1d_bytes, "l2_bytes", (long long)in.l2_bytes,
      "l3_bytes", (long long)in.l3_bytes, "pin", pin_names[in.pin], "binding", in.binding,
      "has_openmp", in.has_openmp ? Py_True : Py_False, "has_hwloc",
      in.has_hwloc ? Py_True : Py_False, "has_onednn", in.has_onednn ? Py_True : Py_False,
      "onednn_version", in.onednn_version, "notes", in.notes);
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
              "block_queries=0)\n\nThread count, kernel table and pinning for fattn calls "
              "(fattn_context). 0 threads = FATTN_NUM_THREADS, else the OpenMP default.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Context_init,
    .tp_dealloc = (destructor)Context_dealloc,
    .tp_repr = (reprfunc)Context_repr,
    .tp_methods = Context_methods,
};

/* ---- sdpa ----------------------------------------------------------------------- */

/* A view as the Python layer passes it: (ptr, dtype, d0, d1, d2, d3, s0, s1, s2, s3). */
static int parse_view(PyObject *o, const char *name, fattn_tensor *t) {
  if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 10) {
    PyErr_Format(PyExc_TypeError, "%s: expected a 10-tuple view", name);
    return -1;
  }
  t->data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(o, 0));
  t->dtype = (fattn_dtype)PyLong_AsLong(PyTuple_GET_ITEM(o, 1));
  for (int i = 0; i < 4; i++) {
    t->dims[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(o, 2 + i));
    t->strides[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(o, 6 + i));
  }
  return PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(sdpa_doc,
             "sdpa(q, k, v, out, mask, lse, kv_lens_ptr, scale, causal, backend, context)\n\n"
             "Low level: views are (ptr, dtype, d0..d3, s0..s3) tuples; mask / lse / context "
             "may be None, kv_lens_ptr 0. Use fattn.scaled_dot_product_attention instead.");

static PyObject *sdpa(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 11) {
    PyErr_Format(PyExc_TypeError, "sdpa takes 11 arguments (%zd given)", nargs);
    return NULL;
  }
  fattn_tensor q, k, v, out, mask, lse;
  fattn_sdpa_params p;
  fattn_sdpa_params_init(&p);
  if (parse_view(args[0], "q", &q) || parse_view(args[1], "k", &k) ||
      parse_view(args[2], "v", &v) || parse_view(args[3], "out", &out))
    return NULL;
  if (args[4] != Py_None) {
    if (parse_view(args[4], "attn_mask", &mask)) return NULL;
    p.attn_mask = &mask;
  }
  if (args[5] != Py_None) {
    if (parse_view(args[5], "lse", &lse)) return NULL;
    p.lse = &lse;
  }
  p.kv_lens = (const int32_t *)PyLong_AsVoidPtr(args[6]);
  p.scale = (float)PyFloat_AsDouble(args[7]);
  p.causal = (fattn_causal)PyLong_AsLong(args[8]);
  p.backend = (fattn_backend)PyLong_AsLong(args[9]);
  if (PyErr_Occurred()) return NULL;
  fattn_context *ctx = NULL;
  if (args[10] != Py_None) {
    if (!PyObject_TypeCheck(args[10], &ContextType)) {
      PyErr_SetString(PyExc_TypeError, "context must be a fattn.Context");
      return NULL;
    }
    ctx = ((ContextObject *)args[10])->ctx;
  }
  fattn_status st;
  const char *msg = "";
  Py_BEGIN_ALLOW_THREADS;
  st = fattn_sdpa(ctx, &q, &k, &v, &out, &p);
  if (st != FATTN_SUCCESS) msg = fattn_last_error(); /* thread-local: read on this thread */
  Py_END_ALLOW_THREADS;
  if (st != FATTN_SUCCESS) return raise_status("fattn_sdpa", st, msg);
  Py_RETURN_NONE;
}

static PyObject *runtime_info(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return info_dict(NULL);
}

static PyMethodDef methods[] = {
    {"sdpa", (PyCFunction)(void (*)(void))sdpa, METH_FASTCALL, sdpa_doc},
    {"runtime_info", runtime_info, METH_NOARGS,
     "runtime_info() -> dict for the default context."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "fattn._C",
    .m_doc = "The C binding of libfattn (see fattn).", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__C(void);
PyMODINIT_FUNC PyInit__C(void) {
  if (PyType_Ready(&ContextType) < 0) return NULL;
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
