#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <acme.h>

static PyObject *series(PyObject *self, PyObject *args) { return PyLong_FromLong(acme_series()); }
static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString(acme_version()); }
static PyObject *add(PyObject *self, PyObject *args) {
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b)) return NULL;
    return PyLong_FromLong(acme_add(a, b));
}

static PyMethodDef methods[] = {
    {"series", series, METH_NOARGS, "ABI series of the libacme this process loaded."},
    {"version", version, METH_NOARGS, "Version of the libacme this process loaded."},
    {"add", add, METH_VARARGS, "a + b, computed by libacme."},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods};
PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
