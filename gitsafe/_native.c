/* gitsafe._native: the loops that touch every tracked path, in C: the index parser, the stat
 * pass (which hashes the files it finds touched), the facts about the index's paths, the
 * untracked pre-scan, and the stat data patched into a copy of the index file; prescan makes
 * the first three one call, without the GIL throughout.
 *
 * gitsafe/index_stat.py and gitsafe/plan.py hold the reference implementations in Python and
 * use them whenever this module is not built; tests/test_native.py holds the two to the same
 * answers.  Nothing here decides anything the Python code does not: it only does the same work
 * without an interpreter round trip per path, and lstats in several threads as git's
 * preload_index does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#define NS 1000000000LL
#define U32 0xFFFFFFFFULL
#define STAGE_MASK 0x3000
#define STAGE_SHIFT 12
#define EXTENDED 0x4000
#define ASSUME_VALID 0x8000
#define SKIP_WORKTREE (1 << 14)
#define INTENT_TO_ADD (1 << 13)
#define ON_DISK 62 /* ten 32-bit stat words, the 20-byte id, 16-bit flags */

#define MODE_LINK 0120000
#define MAX_DEPTH 256    /* deeper parents go to the Python analysis */
#define PATH_BYTES 4096 /* so do longer paths */
#ifndef O_PATH
#define O_PATH 0 /* then O_RDONLY: a directory that cannot be read is left to Python */
#endif
#define MODE_GITLINK 0160000

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ---- parse_index ------------------------------------------------------------------------ */

/* git's offset varint (varint.c); -1 when it runs past the end. */
static long long varint(const unsigned char *data, Py_ssize_t len, Py_ssize_t *pos) {
    if (*pos >= len) return -1;
    unsigned char c = data[(*pos)++];
    unsigned long long value = c & 127;
    while (c & 128) {
        if (*pos >= len || value > (1ULL << 40)) return -1;
        c = data[(*pos)++];
        value = ((value + 1) << 7) + (c & 127);
    }
    return (long long)value;
}

/* Interned values for the modes nearly every entry has. */
static PyObject *common_modes[4];
static const uint32_t common_mode_values[4] = {0100644, 0100755, 0120000, 0160000};

static PyObject *mode_object(uint32_t mode) {
    for (int i = 0; i < 4; i++)
        if (mode == common_mode_values[i] && common_modes[i] != NULL)
            return Py_NewRef(common_modes[i]);
    return PyLong_FromUnsignedLong(mode);
}

/* A tuple of the given new references (stolen), or NULL with every one released. */
static PyObject *tuple_of(Py_ssize_t n, PyObject **items) {
    PyObject *t = NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (items[i] == NULL) goto fail;
    t = PyTuple_New(n);
    if (t == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, items[i]);
    /* Numbers, bytes, strings and such tuples cannot form a cycle: keep the collector from
     * scanning tens of thousands of them (it would untrack them itself, one pass later). */
    PyObject_GC_UnTrack(t);
    return t;
fail:
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(items[i]);
    return NULL;
}

/* A stage-0 entry's path appended to skip_worktree if it is marked so; 0 on success, -1 on a
 * Python error. */
static int skip_entry(PyObject *skip_worktree, const char *name, Py_ssize_t name_len,
                      unsigned extended) {
    if (!(extended & SKIP_WORKTREE)) return 0;
    PyObject *path = PyUnicode_DecodeFSDefaultAndSize(name, name_len);
    int rc = path == NULL ? -1 : PyList_Append(skip_worktree, path);
    Py_XDECREF(path);
    return rc;
}

/* A conflict-stage entry as (path, mode, oid, stage, stat), appended to staged (and its
 * path to skip_worktree if marked); 0 on success, -1 on a Python error. */
static int staged_entry(PyObject *staged, PyObject *skip_worktree, const unsigned char *e,
                        const char *name, Py_ssize_t name_len, unsigned flags,
                        unsigned extended) {
    int rc = -1;
    PyObject *path = PyUnicode_DecodeFSDefaultAndSize(name, name_len);
    PyObject *value = NULL;
    if (path == NULL) goto done;
    if ((extended & SKIP_WORKTREE) && PyList_Append(skip_worktree, path) < 0) goto done;
    PyObject *stat[9];
    for (int k = 0; k < 9; k++) stat[k] = PyLong_FromUnsignedLong(be32(e + 4 * (k < 6 ? k : k + 1)));
    PyObject *fields[5] = {
        Py_NewRef(path),
        mode_object(be32(e + 24)),
        PyBytes_FromStringAndSize((const char *)e + 40, 20),
        PyLong_FromUnsignedLong((flags & STAGE_MASK) >> STAGE_SHIFT),
        tuple_of(9, stat),
    };
    value = tuple_of(5, fields);
    if (value == NULL || PyList_Append(staged, value) < 0) goto done;
    rc = 0;
done:
    Py_XDECREF(path);
    Py_XDECREF(value);
    return rc;
}

/* ---- Table: the stage-0 entries, without a Python object per entry --------------------------
 *
 * A read-only mapping path -> (mode, oid, key) as index_stat._parse's dict holds it, kept as C
 * arrays: about 130 bytes a path instead of about 450, and the loops below (stat_pass,
 * tree_facts, with_mode, dirs_holding_others) read it without creating Python objects.  Paths
 * are the index's bytes; the Python face decodes and encodes them as os.fsdecode/os.fsencode.
 */

typedef struct {
    uint32_t name_off, name_len, mode;
    unsigned char oid[20];
    long long key[6]; /* mtime ns, ctime ns, ino, size, uid, gid */
    Py_ssize_t at;    /* where the entry starts in the index file (patch_stat) */
} TEntry;

typedef struct {
    PyObject_HEAD
    TEntry *entries;   /* room for every entry of the file, allocated by parse_index */
    Py_ssize_t n;      /* n entries, one per path */
    char *names;
    size_t names_len, names_cap;
    uint32_t *slots; /* open addressing: entry index + 1, 0 empty */
    size_t nslots;
    int repeated; /* a path is listed twice: its first record keeps stale values (patch_stat) */
} TableObject;

static PyTypeObject TableType;

/* A zero-filled block for a hash table, written through before any read.  calloc leaves a large
 * block's fresh pages unmapped; a table's first look at a slot then maps the shared zero page,
 * and its first store must replace that page and flush the old mapping from the TLB of every
 * CPU that runs one of the process's threads: an interrupt to each of them, which costs
 * microseconds under a hypervisor.  Writing the zeros first gives each page its own frame at its
 * first touch, with nothing to flush. */
/* Called through a volatile pointer: GCC turns a plain malloc and memset into calloc. */
static void *(*volatile const fill_bytes)(void *, int, size_t) = memset;

static void *zeroed(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *p = malloc(count * size);
    if (p != NULL) fill_bytes(p, 0, count * size);
    return p;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Index of the entry for path s (n bytes), or -1. */
static Py_ssize_t table_find(const TableObject *t, const char *s, size_t n) {
    if (t->nslots == 0) return -1;
    size_t mask = t->nslots - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        uint32_t slot = t->slots[i];
        if (slot == 0) return -1;
        const TEntry *e = &t->entries[slot - 1];
        if (e->name_len == n && memcmp(t->names + e->name_off, s, n) == 0) return slot - 1;
        i = (i + 1) & mask;
    }
}

static void fill_entry(TEntry *x, const unsigned char *e) {
    uint32_t c_sec = be32(e), c_nsec = be32(e + 4), m_sec = be32(e + 8), m_nsec = be32(e + 12);
    x->mode = be32(e + 24);
    memcpy(x->oid, e + 40, 20);
    x->key[0] = (long long)m_sec * NS + m_nsec;
    x->key[1] = (long long)c_sec * NS + c_nsec;
    x->key[2] = be32(e + 20);
    x->key[3] = be32(e + 36);
    x->key[4] = be32(e + 28);
    x->key[5] = be32(e + 32);
}

/* Add an entry from the index file's record e.  A path listed again keeps its first place and
 * takes the later values, as assigning to a dict does.  parse_index sized entries and slots for
 * every entry of the file; only the names can outgrow it (index v4 shares leading bytes). */
static int table_add(TableObject *t, const unsigned char *e, Py_ssize_t at, const char *name,
                     size_t n) {
    size_t mask = t->nslots - 1, i = (size_t)hash_bytes(name, n) & mask;
    for (;;) {
        uint32_t slot = t->slots[i];
        if (slot == 0) break;
        TEntry *old = &t->entries[slot - 1];
        if (old->name_len == n && memcmp(t->names + old->name_off, name, n) == 0) {
            fill_entry(old, e);
            old->at = at;
            t->repeated = 1;
            return 0;
        }
        i = (i + 1) & mask;
    }
    if (t->names_len + n > UINT32_MAX) return -1;
    if (t->names_len + n > t->names_cap) {
        size_t cap = (t->names_cap + n) * 2;
        char *grown = realloc(t->names, cap);
        if (grown == NULL) return -1;
        t->names = grown;
        t->names_cap = cap;
    }
    TEntry *x = &t->entries[t->n];
    fill_entry(x, e);
    x->at = at;
    x->name_off = (uint32_t)t->names_len;
    x->name_len = (uint32_t)n;
    memcpy(t->names + t->names_len, name, n);
    t->names_len += n;
    t->slots[i] = (uint32_t)t->n + 1;
    t->n++;
    return 0;
}

static PyObject *entry_path(const TableObject *t, const TEntry *e) {
    return PyUnicode_DecodeFSDefaultAndSize(t->names + e->name_off, e->name_len);
}

static PyObject *entry_value(const TEntry *e) {
    PyObject *key[6];
    for (int k = 0; k < 6; k++) key[k] = PyLong_FromLongLong(e->key[k]);
    PyObject *fields[3] = {
        mode_object(e->mode),
        PyBytes_FromStringAndSize((const char *)e->oid, 20),
        tuple_of(6, key),
    };
    return tuple_of(3, fields);
}

/* The entry a Python path names, -1 if none (or on error, with the exception set). */
static Py_ssize_t table_lookup(const TableObject *t, PyObject *path) {
    if (!PyUnicode_Check(path)) return -1;
    PyObject *b = PyUnicode_EncodeFSDefault(path);
    if (b == NULL) {
        /* A str no file name can be (a lone surrogate): not a key, as in a dict. */
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) PyErr_Clear();
        return -1;
    }
    Py_ssize_t k = table_find(t, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return k;
}

static Py_ssize_t table_length(PyObject *self) { return ((TableObject *)self)->n; }

static PyObject *table_subscript(PyObject *self, PyObject *path) {
    TableObject *t = (TableObject *)self;
    Py_ssize_t k = table_lookup(t, path);
    if (k < 0) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, path);
        return NULL;
    }
    return entry_value(&t->entries[k]);
}

static int table_contains(PyObject *self, PyObject *path) {
    Py_ssize_t k = table_lookup((TableObject *)self, path);
    return k >= 0 ? 1 : (PyErr_Occurred() ? -1 : 0);
}

static void table_dealloc(PyObject *self) {
    TableObject *t = (TableObject *)self;
    free(t->entries);
    free(t->names);
    free(t->slots);
    Py_TYPE(self)->tp_free(self);
}

typedef struct {
    PyObject_HEAD
    TableObject *table;
    Py_ssize_t at;
} TableIterObject;

static PyTypeObject TableIterType;

static PyObject *table_iter(PyObject *self) {
    TableIterObject *it = PyObject_New(TableIterObject, &TableIterType);
    if (it == NULL) return NULL;
    it->table = (TableObject *)Py_NewRef(self);
    it->at = 0;
    return (PyObject *)it;
}

static PyObject *table_iter_next(PyObject *self) {
    TableIterObject *it = (TableIterObject *)self;
    TableObject *t = it->table;
    return it->at < t->n ? entry_path(t, &t->entries[it->at++]) : NULL;
}

static void table_iter_dealloc(PyObject *self) {
    Py_DECREF(((TableIterObject *)self)->table);
    PyObject_Free(self);
}

static PyTypeObject TableIterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gitsafe._native.TableIterator",
    .tp_basicsize = sizeof(TableIterObject),
    .tp_dealloc = table_iter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = table_iter_next,
};

static PyObject *table_get(PyObject *self, PyObject *args) {
    PyObject *path, *fallback = Py_None;
    if (!PyArg_UnpackTuple(args, "get", 1, 2, &path, &fallback)) return NULL;
    TableObject *t = (TableObject *)self;
    Py_ssize_t k = table_lookup(t, path);
    if (k >= 0) return entry_value(&t->entries[k]);
    return PyErr_Occurred() ? NULL : Py_NewRef(fallback);
}

/* keys() and items() as lists: for the code and tests that treat it as the dict it stands for. */
static PyObject *table_keys(PyObject *self, PyObject *unused) {
    (void)unused;
    return PySequence_List(self);
}

static PyObject *table_items(PyObject *self, PyObject *unused) {
    (void)unused;
    TableObject *t = (TableObject *)self;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t k = 0; out != NULL && k < t->n; k++) {
        const TEntry *e = &t->entries[k];
        PyObject *pair = Py_BuildValue("(NN)", entry_path(t, e), entry_value(e));
        if (pair == NULL || PyList_Append(out, pair) < 0) Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    return out;
}

static PyMethodDef table_methods[] = {
    {"get", table_get, METH_VARARGS, "get(path, default=None)"},
    {"keys", table_keys, METH_NOARGS, "The paths, in index order, as a list."},
    {"items", table_items, METH_NOARGS, "(path, (mode, oid, key)) pairs, as a list."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods table_as_mapping = {table_length, table_subscript, NULL};
static PySequenceMethods table_as_sequence = {.sq_contains = table_contains};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gitsafe._native.Table",
    .tp_doc = "The index's stage-0 entries: a read-only mapping path -> (mode, oid, key).",
    .tp_basicsize = sizeof(TableObject),
    .tp_dealloc = table_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_mapping = &table_as_mapping,
    .tp_as_sequence = &table_as_sequence,
    .tp_iter = table_iter,
    .tp_methods = table_methods,
};

static TableObject *table_new(void) {
    TableObject *t = PyObject_New(TableObject, &TableType);
    if (t == NULL) return NULL;
    t->entries = NULL;
    t->n = 0;
    t->names = NULL;
    t->names_len = t->names_cap = 0;
    t->slots = NULL;
    t->nslots = 0;
    t->repeated = 0;
    return t;
}

PyDoc_STRVAR(parse_index_doc,
             "parse_index(data) -> (entries, staged, skip_worktree, marked, end) or None\n\n"
             "index_stat._parse in C: the stage-0 entries come as a Table (a read-only mapping\n"
             "equal to _parse's dict), staged ones as (path, mode, oid, stage, stat).");

/* What of an index's entries needs Python objects (a conflict stage's entry, a skip-worktree
 * path): noted while parse_entries runs without the GIL, made into objects after, in file
 * order. */
typedef struct {
    unsigned char raw[ON_DISK]; /* the entry's record, copied: the file's bytes may go first */
    size_t name_off, name_len;  /* its path, in names */
    unsigned flags, extended;
} Special;

typedef struct {
    Special *list;
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
} Specials;

static void specials_free(Specials *sp) {
    free(sp->list);
    free(sp->names);
}

/* 0, or -1 when out of memory. */
static int specials_add(Specials *sp, const unsigned char *e, const char *name, size_t n,
                        unsigned flags, unsigned extended) {
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 16;
        Special *grown = realloc(sp->list, cap * sizeof *grown);
        if (grown == NULL) return -1;
        sp->list = grown;
        sp->cap = cap;
    }
    if (sp->names == NULL || sp->names_len + n > sp->names_cap) {
        size_t cap = (sp->names_cap + n) * 2 + 64;
        char *grown = realloc(sp->names, cap);
        if (grown == NULL) return -1;
        sp->names = grown;
        sp->names_cap = cap;
    }
    memcpy(sp->names + sp->names_len, name, n);
    Special *x = &sp->list[sp->n++];
    memcpy(x->raw, e, ON_DISK);
    x->name_off = sp->names_len;
    x->name_len = n;
    x->flags = flags;
    x->extended = extended;
    sp->names_len += n;
    return 0;
}

/* index_stat._parse's loop without Python objects: the stage-0 entries into table (its
 * arrays allocated here, for every entry of the file), what needs objects into sp.  1 parsed
 * (*end: where the entries end), 0 malformed, -1 out of memory.  No Python API: it runs
 * without the GIL. */
static int parse_entries(const unsigned char *data, Py_ssize_t len, TableObject *table,
                         Specials *sp, int *marked, Py_ssize_t *end) {
    int rc = 0;
    char *previous = NULL, *name = NULL;
    Py_ssize_t previous_len = 0, name_cap = 0;
    *marked = 0;
    if (len < 12 || memcmp(data, "DIRC", 4) != 0) return 0;
    uint32_t version = be32(data + 4), count = be32(data + 8);
    if (version < 2 || version > 4) return 0;
    if ((size_t)count > (size_t)len / ON_DISK) return 0; /* more entries than bytes for them */
    /* Room for every entry and name up front (the names fit in the file itself), and a hash
     * table at most half full: no regrowth while parsing. */
    {
        size_t slots = 2048;
        while (slots < (size_t)count * 2 + 2) slots *= 2;
        table->entries = malloc(((size_t)count + 1) * sizeof *table->entries);
        table->names = malloc((size_t)len);
        table->slots = zeroed(slots, sizeof *table->slots);
        if (table->entries == NULL || table->names == NULL || table->slots == NULL) return -1;
        table->nslots = slots;
        table->names_cap = (size_t)len;
    }
    Py_ssize_t pos = 12;
    for (uint32_t i = 0; i < count; i++) {
        Py_ssize_t start = pos;
        if (len - pos < ON_DISK) goto done;
        const unsigned char *e = data + pos;
        unsigned flags = ((unsigned)e[60] << 8) | e[61];
        unsigned extended = 0;
        pos += ON_DISK;
        if (flags & EXTENDED) {
            if (len - pos < 2) goto done;
            extended = ((unsigned)data[pos] << 8) | data[pos + 1];
            pos += 2;
        }
        const char *tail;
        Py_ssize_t name_len;
        if (version == 4) {
            long long strip = varint(data, len, &pos);
            if (strip < 0 || strip > previous_len) goto done;
            const unsigned char *stop = memchr(data + pos, 0, (size_t)(len - pos));
            if (stop == NULL) goto done;
            Py_ssize_t suffix = stop - (data + pos);
            name_len = previous_len - (Py_ssize_t)strip + suffix;
            if (name_len + 1 > name_cap) {
                name_cap = (name_len + 1) * 2;
                char *grown = realloc(name, (size_t)name_cap);
                char *grown_prev = realloc(previous, (size_t)name_cap);
                if (grown) name = grown;
                if (grown_prev) previous = grown_prev;
                if (grown == NULL || grown_prev == NULL) {
                    rc = -1;
                    goto done;
                }
            }
            memcpy(name + (previous_len - strip), data + pos, (size_t)suffix);
            if (previous_len - strip) memcpy(name, previous, (size_t)(previous_len - strip));
            pos = (stop - data) + 1;
            memcpy(previous, name, (size_t)name_len);
            previous_len = name_len;
            tail = name;
        } else {
            if (pos > len) goto done;
            const unsigned char *stop = memchr(data + pos, 0, (size_t)(len - pos));
            if (stop == NULL) goto done;
            name_len = stop - (data + pos);
            tail = (const char *)data + pos;
            pos = start + (((stop - data) - start + 8) & ~(Py_ssize_t)7);
        }
        if (flags & ASSUME_VALID) *marked = 1;
        if (extended & INTENT_TO_ADD) *marked = 1;
        int staged = (flags & STAGE_MASK) != 0;
        if (!staged && table_add(table, e, start, tail, (size_t)name_len) < 0) {
            rc = -1;
            goto done;
        }
        if ((staged || (extended & SKIP_WORKTREE)) &&
            specials_add(sp, e, tail, (size_t)name_len, flags, extended) < 0) {
            rc = -1;
            goto done;
        }
    }
    *end = pos;
    rc = 1;
done:
    free(previous);
    free(name);
    return rc;
}

/* The staged entries and skip-worktree paths noted in sp, appended as parse_index returns
 * them; 0, or -1 with a Python error set. */
static int specials_python(const Specials *sp, PyObject *staged, PyObject *skip) {
    for (size_t i = 0; i < sp->n; i++) {
        const Special *x = &sp->list[i];
        const char *name = sp->names + x->name_off;
        Py_ssize_t n = (Py_ssize_t)x->name_len;
        int rc = (x->flags & STAGE_MASK)
                     ? staged_entry(staged, skip, x->raw, name, n, x->flags, x->extended)
                     : skip_entry(skip, name, n, x->extended);
        if (rc < 0) return -1;
    }
    return 0;
}

/* parse_index's answer once parse_entries gave rc: a new reference (None for a malformed
 * file, or a path that does not decode, as the Python parser hands it to libgit2), or NULL
 * with an error set. */
static PyObject *parsed_answer(int rc, TableObject *table, const Specials *sp, int marked,
                               Py_ssize_t end) {
    if (rc < 0) return PyErr_NoMemory();
    if (rc == 0) Py_RETURN_NONE;
    PyObject *staged = PyList_New(0), *skip = PyList_New(0), *result = NULL;
    if (staged != NULL && skip != NULL) {
        if (specials_python(sp, staged, skip) == 0)
            result = Py_BuildValue("(OOOOn)", (PyObject *)table, staged, skip,
                                   marked ? Py_True : Py_False, end);
        else if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
    }
    Py_XDECREF(staged);
    Py_XDECREF(skip);
    return result;
}

static PyObject *parse_index(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    TableObject *table = table_new();
    PyObject *result = NULL;
    if (table != NULL) {
        Specials sp = {0};
        int marked = 0, rc;
        Py_ssize_t end = 0;
        Py_BEGIN_ALLOW_THREADS;
        rc = parse_entries(view.buf, view.len, table, &sp, &marked, &end);
        Py_END_ALLOW_THREADS;
        result = parsed_answer(rc, table, &sp, marked, end);
        specials_free(&sp);
        Py_DECREF(table);
    }
    PyBuffer_Release(&view);
    return result;
}

/* ---- stat_pass --------------------------------------------------------------------------- */

enum { CLEAN = 0, REST = 1, TOUCHED = 2 };

/* One path of the stat pass.  Lean (40 bytes) and pointing into the Table rather than copying
 * from it: every page of a fresh allocation costs a page fault on first touch, about 1.5 us
 * each here, and these are allocated per run for every tracked file. */
typedef struct {
    const char *name;         /* the path's bytes (in the Table, or a dict key's encoding) */
    const long long *key;     /* mtime ns, ctime ns, ino, size, uid, gid */
    const unsigned char *oid; /* for a Table: the entry's blob id, to hash a touched file against */
    uint32_t name_len, mode;
    uint32_t entry; /* for a Table: the entry's index */
    int result;
} Item;
/* prescan lays items over the index file's bytes, counting on this size (see there). */
_Static_assert(sizeof(Item) == 40, "an Item is 40 bytes");

/* A dict's path, which the stat pass's items point into. */
typedef struct {
    PyObject *path;  /* the key, owned (the dict may change while the GIL is out) */
    PyObject *owned; /* the path as file system bytes, owned */
    long long key[6];
} DictPath;

#define PACKED 40 /* index_stat.pack_stat's bytes: a touched file's stat data */

typedef struct {
    Item *items;
    unsigned char *packed; /* PACKED bytes for each item, written for touched ones only */
    Py_ssize_t lo, hi;
    int root_fd;
    long long index_mtime_ns;
    int filemode;
    const EVP_MD *sha1; /* fetched once for all threads; NULL: touched files go to Python */
} Chunk;

/* Reads leave access times alone (O_NOATIME): a preview's own reads change no atime, and a
 * first read of a fresh copy does not dirty every directory's inode, which made the threads
 * of a scan queue on the file system's journal.  The kernel allows the flag only to the owner
 * (or CAP_FOWNER) and answers EPERM otherwise: then the plain open. */
static int open_quiet(int dirfd, const char *name, int flags) {
    int fd = openat(dirfd, name, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = openat(dirfd, name, flags);
    return fd;
}

/* A touched file costs one open and read here, in the stat pass's threads, instead of an
 * interpreter round trip and a hash through libgit2 later: after a build or a restore touched
 * every file, hashing is most of a run. */
#define READ_BYTES 65536
#define RECORD (4 + PACKED) /* a touched file in stat_pass's answer: uint32 entry index, packed */

/* Does the regular file name (in dirfd), which lstat gave as s, hold exactly the blob oid?
 * "blob <size>\0" and the bytes, hashed as git hashes an object; anything unexpected (another
 * file in its place, a size that changed while it was read, a read error) answers no, which
 * sends the path to the full analysis. */
static int same_blob(int dirfd, const char *name, const struct stat *s, const unsigned char *oid,
                     const EVP_MD *sha1, EVP_MD_CTX *ctx, unsigned char *buf) {
    int fd = open_quiet(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat f;
    int same = 0;
    /* The very file lstat saw, unchanged since: the stat data recorded is the hashed file's. */
    if (fstat(fd, &f) != 0 || !S_ISREG(f.st_mode) || f.st_dev != s->st_dev ||
        f.st_ino != s->st_ino || f.st_size != s->st_size ||
        f.st_mtim.tv_sec != s->st_mtim.tv_sec || f.st_mtim.tv_nsec != s->st_mtim.tv_nsec ||
        f.st_ctim.tv_sec != s->st_ctim.tv_sec || f.st_ctim.tv_nsec != s->st_ctim.tv_nsec)
        goto done;
    char header[32];
    int n = snprintf(header, sizeof header, "blob %lld", (long long)f.st_size);
    if (n < 0 || (size_t)n >= sizeof header) goto done;
    if (EVP_DigestInit_ex(ctx, sha1, NULL) != 1 ||
        EVP_DigestUpdate(ctx, header, (size_t)n + 1) != 1) /* with its NUL */
        goto done;
    long long left = (long long)f.st_size;
    for (;;) {
        /* One byte more than expected must find the end: a file that grew is not the blob. */
        size_t want = left >= READ_BYTES ? READ_BYTES : (size_t)left + 1;
        ssize_t got = read(fd, buf, want);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 || got > left) goto done;
        if (got == 0) break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1) goto done;
        left -= got;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    same = left == 0 && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20 &&
           memcmp(md, oid, 20) == 0;
done:
    close(fd);
    return same;
}

/* index_stat.pack_stat in C; seconds are tv_sec, as git records them. */
static void pack(unsigned char *out, const struct stat *s, uint32_t mode) {
    int32_t c_sec = (int32_t)((long long)s->st_ctim.tv_sec & 0x7FFFFFFF);
    int32_t m_sec = (int32_t)((long long)s->st_mtim.tv_sec & 0x7FFFFFFF);
    uint32_t fields[10] = {
        (uint32_t)c_sec,          (uint32_t)s->st_ctim.tv_nsec,
        (uint32_t)m_sec,          (uint32_t)s->st_mtim.tv_nsec,
        (uint32_t)(s->st_dev & U32), (uint32_t)(s->st_ino & U32),
        mode,                     (uint32_t)s->st_uid,
        (uint32_t)s->st_gid,      (uint32_t)((unsigned long long)s->st_size & U32),
    };
    memcpy(out, fields, sizeof fields); /* native order, as struct "=iIiIIIIIII" */
}

/* Total nanoseconds of a timestamp that can equal a key from the index (seconds in 32 bits);
 * -1 for one that cannot. */
static long long comparable_ns(const struct timespec *t) {
    if (t->tv_sec < 0 || t->tv_sec > 0x100000010LL) return -1;
    return (long long)t->tv_sec * NS + t->tv_nsec;
}

/* Copy component [from, to) of rel into out as a C string; 0 if it is one to refuse (empty,
 * ".", "..": no index path git accepts has them). */
static int component(const char *rel, Py_ssize_t from, Py_ssize_t to, char *out) {
    Py_ssize_t n = to - from;
    if (n <= 0 || (n == 1 && rel[from] == '.') || (n == 2 && rel[from] == '.' && rel[from + 1] == '.'))
        return 0;
    memcpy(out, rel + from, (size_t)n);
    out[n] = '\0';
    return 1;
}

static void *scan_chunk(void *arg) {
    Chunk *c = arg;
    /* fds[0] is the top; fds[1..opened] the leading directories of the last parent, each
     * opened from the one before with O_NOFOLLOW: a path reached through them has no symlink
     * or non-directory on the way (TreeView.is_dir), and each file costs a one-component
     * fstatat instead of a walk from the root. */
    int fds[MAX_DEPTH + 1];
    int opened = 0, wanted = -1; /* wanted: components of the last parent */
    char last[PATH_BYTES], name[PATH_BYTES];
    Py_ssize_t last_len = -1;
    EVP_MD_CTX *ctx = NULL; /* made at the first touched file */
    unsigned char *buf = NULL;
    fds[0] = c->root_fd;
    for (Py_ssize_t i = c->lo; i < c->hi; i++) {
        Item *it = &c->items[i];
        const char *rel = it->name;
        Py_ssize_t rel_len = (Py_ssize_t)it->name_len;
        if (rel_len >= PATH_BYTES || memchr(rel, 0, (size_t)rel_len) != NULL) {
            it->result = REST; /* too long for the buffers, or an embedded NUL: Python decides */
            continue;
        }
        Py_ssize_t parent_len = rel_len;
        while (parent_len > 0 && rel[parent_len - 1] != '/') parent_len--;
        Py_ssize_t base = parent_len; /* where the file's own name starts */
        parent_len = parent_len > 0 ? parent_len - 1 : 0; /* the parent, without its slash */
        if (!(parent_len == last_len && memcmp(last, rel, (size_t)parent_len) == 0)) {
            /* Keep the directories this parent shares with the last one: the longest leading
             * part of both that ends at a component boundary of both. */
            Py_ssize_t from = 0;
            if (last_len >= 0) {
                Py_ssize_t k = 0, m = parent_len < last_len ? parent_len : last_len;
                while (k < m && rel[k] == last[k]) k++;
                if ((k == last_len || last[k] == '/') && (k == parent_len || rel[k] == '/')) {
                    from = k;
                } else {
                    do k--; while (k > 0 && rel[k] != '/'); /* a '/' below k ends one in both */
                    from = k > 0 ? k : 0;
                }
            }
            int keep = 0;
            for (Py_ssize_t j = 0; j < from; j++) keep += rel[j] == '/';
            if (from > 0) keep++;
            while (opened > keep) close(fds[opened--]);
            wanted = 0;
            for (Py_ssize_t j = 0; j < parent_len; j++) wanted += rel[j] == '/';
            if (parent_len > 0) wanted++;
            /* Open the components after the kept ones. */
            Py_ssize_t at = 0;
            for (int skip = 0; skip < opened; skip++) {
                while (rel[at] != '/') at++;
                at++;
            }
            while (opened < wanted && opened < MAX_DEPTH) {
                Py_ssize_t to = at;
                while (to < parent_len && rel[to] != '/') to++;
                if (!component(rel, at, to, name)) break;
                int fd = openat(fds[opened], name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) break;
                fds[++opened] = fd;
                at = to + 1;
            }
            memcpy(last, rel, (size_t)parent_len);
            last_len = parent_len;
        }
        struct stat s;
        if (opened != wanted || !component(rel, base, rel_len, name) ||
            fstatat(fds[opened], name, &s, AT_SYMLINK_NOFOLLOW) != 0) {
            it->result = REST;
            continue;
        }
        unsigned mask = it->mode == MODE_LINK ? 0170000 : (c->filemode ? 0170100 : 0170000);
        long long mtime = comparable_ns(&s.st_mtim), ctime = comparable_ns(&s.st_ctim);
        int same = ((unsigned)s.st_mode & mask) == (it->mode & mask) && mtime >= 0 &&
                   ctime >= 0 && it->key[0] == mtime && it->key[1] == ctime &&
                   it->key[2] == (long long)(s.st_ino & U32) &&
                   it->key[3] == (long long)((unsigned long long)s.st_size & U32) &&
                   it->key[4] == (long long)s.st_uid && it->key[5] == (long long)s.st_gid &&
                   !(it->key[3] == 0 && s.st_size != 0) && /* smudged by git's racy check */
                   it->key[0] < c->index_mtime_ns;
        if (same) {
            it->result = CLEAN;
        } else if (it->mode != MODE_LINK &&
                   ((unsigned)s.st_mode & 0170100) == (it->mode & 0170100)) {
            /* Perhaps the same bytes.  A dict's caller hashes it; a Table's entry is hashed
             * here, and only a file that holds its entry's blob stays "touched". */
            it->result = TOUCHED;
            pack(c->packed + (size_t)i * PACKED, &s, it->mode); /* from before the read */
            if (it->oid != NULL) {
                if (ctx == NULL && (ctx = EVP_MD_CTX_new()) != NULL) buf = malloc(READ_BYTES);
                if (c->sha1 == NULL || ctx == NULL || buf == NULL ||
                    !same_blob(fds[opened], name, &s, it->oid, c->sha1, ctx, buf))
                    it->result = REST;
            }
        } else {
            it->result = REST;
        }
    }
    while (opened > 0) close(fds[opened--]);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return NULL;
}

PyDoc_STRVAR(
    stat_pass_doc,
    "stat_pass(entries, near, root, index_mtime_ns, filemode, threads) -> (rest, touched)\n\n"
    "The stat loop of plan._Analysis.unchanged_elsewhere: rest is every path whose stat data\n"
    "cannot vouch for it (and every path in near or of a submodule); touched holds the files of\n"
    "the right type and exec bit whose stat data differs.  For a dict, touched is a list of\n"
    "(path, packed stat); for a Table, whose entries this hashes, it holds only the files whose\n"
    "bytes are their entry's blob, as records (entry index, packed stat; see record_pairs), and\n"
    "the others join rest.");

static int as_key(PyObject *tuple, long long key[6]) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != 6) return -1;
    for (int k = 0; k < 6; k++) {
        key[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, k));
        if (key[k] == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
typedef EVP_MD Sha1;
/* One explicit fetch: EVP_sha1() in each digest would fetch it again, under a lock the
 * threads share. */
static Sha1 *sha1_get(void) { return EVP_MD_fetch(NULL, "SHA1", NULL); }
static void sha1_put(Sha1 *md) { EVP_MD_free(md); }
#else
typedef const EVP_MD Sha1;
static Sha1 *sha1_get(void) { return EVP_sha1(); }
static void sha1_put(Sha1 *md) { (void)md; }
#endif

/* The stat pass proper: each of count items gets its result, in up to threads threads, and
 * each touched one its stat data in packed (PACKED bytes an item; the pages of the others are
 * never written, so a fresh allocation costs nothing for them).  0 when the top cannot be
 * opened as a real directory (TreeView.is_dir("")): then none has one.  No Python API: it
 * runs without the GIL. */
static int stat_items(const char *root, Item *items, unsigned char *packed, Py_ssize_t count,
                      long long index_mtime_ns, int filemode, const EVP_MD *sha1, int threads) {
    if (threads < 1) threads = 1;
    if (threads > 16) threads = 16;
    /* git's preload_index rule of thumb: a thread is worth it for a few hundred entries. */
    if ((Py_ssize_t)threads > count / 500 + 1) threads = (int)(count / 500 + 1);
    Chunk chunks[16];
    pthread_t tids[16];
    int started[16] = {0};
    int root_fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root_fd < 0) return 0;
    for (int t = 0; t < threads; t++) {
        chunks[t] = (Chunk){items, packed, count * t / threads, count * (t + 1) / threads,
                            root_fd, index_mtime_ns, filemode, sha1};
        started[t] = t > 0 && pthread_create(&tids[t], NULL, scan_chunk, &chunks[t]) == 0;
    }
    for (int t = 0; t < threads; t++)
        if (!started[t]) scan_chunk(&chunks[t]); /* this thread's share, or a failed one */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tids[t], NULL);
    close(root_fd);
    return 1;
}

/* The items of a Table's entries that stat data may vouch for, and their count; the others
 * (those in_near marks, if given, and gitlinks) as entry indices, in table order.  No Python
 * API. */
static Py_ssize_t table_stat_items(const TableObject *t, const char *in_near, Item *items,
                                   Py_ssize_t *others, Py_ssize_t *nothers) {
    Py_ssize_t count = 0;
    *nothers = 0;
    for (Py_ssize_t k = 0; k < t->n; k++) {
        const TEntry *e = &t->entries[k];
        if ((in_near != NULL && in_near[k]) || e->mode == MODE_GITLINK) {
            others[(*nothers)++] = k;
            continue;
        }
        items[count++] = (Item){t->names + e->name_off, e->key, e->oid, e->name_len, e->mode,
                                (uint32_t)k, REST};
    }
    return count;
}

static int append_entry_path(PyObject *list, const TableObject *t, Py_ssize_t k) {
    PyObject *p = entry_path(t, &t->entries[k]);
    int rc = p == NULL ? -1 : PyList_Append(list, p);
    Py_XDECREF(p);
    return rc;
}

/* stat_pass's answer for a Table, (rest, touched records): the others first, then the items
 * the stat data could not vouch for (all of them unless root_ok). */
static PyObject *table_stat_answer(const TableObject *t, const Py_ssize_t *others,
                                   Py_ssize_t nothers, const Item *items,
                                   const unsigned char *packed, Py_ssize_t count, int root_ok) {
    PyObject *rest = PyList_New(0), *touched = NULL, *result = NULL;
    unsigned char *records = malloc((size_t)(count ? count : 1) * RECORD);
    Py_ssize_t nrecords = 0;
    if (rest == NULL) goto done;
    if (records == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nothers; i++)
        if (append_entry_path(rest, t, others[i]) < 0) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        const Item *it = &items[i];
        int res = root_ok ? it->result : REST;
        if (res == CLEAN) continue;
        if (res == TOUCHED) {
            memcpy(records + nrecords * RECORD, &it->entry, 4);
            memcpy(records + nrecords * RECORD + 4, packed + (size_t)i * PACKED, PACKED);
            nrecords++;
        } else if (append_entry_path(rest, t, it->entry) < 0)
            goto done;
    }
    touched = PyBytes_FromStringAndSize((const char *)records, nrecords * RECORD);
    if (touched != NULL) result = PyTuple_Pack(2, rest, touched);
done:
    free(records);
    Py_XDECREF(rest);
    Py_XDECREF(touched);
    return result;
}

static PyObject *table_stat_pass(TableObject *t, PyObject *near, const char *root,
                                 long long index_mtime_ns, int filemode, int threads) {
    size_t n = (size_t)(t->n ? t->n : 1);
    Item *items = malloc(n * sizeof *items);
    unsigned char *packed = malloc(n * PACKED);
    Py_ssize_t *others = malloc(n * sizeof *others), count, nothers;
    char *in_near = near != Py_None ? calloc(n, 1) : NULL;
    PyObject *result = NULL;
    if (items == NULL || packed == NULL || others == NULL ||
        (near != Py_None && in_near == NULL)) {
        PyErr_NoMemory();
        goto done;
    }
    if (near != Py_None) {
        PyObject *it = PyObject_GetIter(near), *path;
        if (it == NULL) goto done;
        while ((path = PyIter_Next(it)) != NULL) {
            Py_ssize_t k = table_lookup(t, path);
            Py_DECREF(path);
            if (k >= 0) in_near[k] = 1;
            if (PyErr_Occurred()) break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) goto done;
    }
    count = table_stat_items(t, in_near, items, others, &nothers);
    Sha1 *sha1 = sha1_get();
    int root_ok;
    Py_BEGIN_ALLOW_THREADS;
    root_ok = stat_items(root, items, packed, count, index_mtime_ns, filemode, sha1, threads);
    Py_END_ALLOW_THREADS;
    sha1_put(sha1);
    result = table_stat_answer(t, others, nothers, items, packed, count, root_ok);
done:
    free(items);
    free(packed);
    free(others);
    free(in_near);
    return result;
}

static PyObject *stat_pass(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *entries, *near, *root_obj;
    long long index_mtime_ns;
    int filemode, threads;
    if (!PyArg_ParseTuple(args, "OOO&Lpi", &entries, &near, PyUnicode_FSConverter, &root_obj,
                          &index_mtime_ns, &filemode, &threads))
        return NULL;
    if (PyObject_TypeCheck(entries, &TableType)) {
        PyObject *answer = table_stat_pass((TableObject *)entries, near,
                                           PyBytes_AS_STRING(root_obj), index_mtime_ns,
                                           filemode, threads);
        Py_DECREF(root_obj);
        return answer;
    }
    if (!PyDict_Check(entries)) {
        Py_DECREF(root_obj);
        PyErr_SetString(PyExc_TypeError, "entries must be a dict or a Table");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(entries), count = 0, pos = 0;
    PyObject *rest = PyList_New(0), *touched = PyList_New(0), *result = NULL;
    size_t room = (size_t)(n ? n : 1);
    Item *items = PyMem_Calloc(room, sizeof *items);
    DictPath *paths = PyMem_Calloc(room, sizeof *paths);
    unsigned char *packed = PyMem_Malloc(room * PACKED);
    PyObject *path, *value;
    if (rest == NULL || touched == NULL || items == NULL || paths == NULL || packed == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    while (PyDict_Next(entries, &pos, &path, &value)) {
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3) {
            PyErr_SetString(PyExc_TypeError, "entries values must be (mode, oid, key)");
            goto done;
        }
        unsigned long mode = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(value, 0));
        if (mode == (unsigned long)-1 && PyErr_Occurred()) goto done;
        int near_path = near == Py_None ? 0 : PySequence_Contains(near, path);
        if (near_path < 0) goto done;
        if (near_path || mode == MODE_GITLINK) {
            if (PyList_Append(rest, path) < 0) goto done;
            continue;
        }
        if ((size_t)count >= room) { /* Python code above (__index__, near) grew the dict */
            PyErr_SetString(PyExc_RuntimeError, "entries changed size during the stat pass");
            goto done;
        }
        DictPath *dp = &paths[count];
        if (as_key(PyTuple_GET_ITEM(value, 2), dp->key) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "an entry's key must be six integers");
            goto done;
        }
        dp->owned = PyUnicode_EncodeFSDefault(path);
        if (dp->owned == NULL) goto done;
        dp->path = Py_NewRef(path);
        Py_ssize_t len = PyBytes_GET_SIZE(dp->owned);
        /* A length past the buffers stands for itself: the pass sends it to Python. */
        items[count] = (Item){PyBytes_AS_STRING(dp->owned), dp->key, NULL,
                              (uint32_t)(len < PATH_BYTES ? len : PATH_BYTES), (uint32_t)mode,
                              0, REST};
        count++;
    }
    int root_ok;
    Py_BEGIN_ALLOW_THREADS;
    root_ok = stat_items(PyBytes_AS_STRING(root_obj), items, packed, count, index_mtime_ns,
                         filemode, NULL, threads);
    Py_END_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < count; i++) {
        int res = root_ok ? items[i].result : REST;
        if (res == CLEAN) continue;
        if (res == REST) {
            if (PyList_Append(rest, paths[i].path) < 0) goto done;
            continue;
        }
        PyObject *pair = Py_BuildValue("(Oy#)", paths[i].path,
                                       (const char *)packed + (size_t)i * PACKED,
                                       (Py_ssize_t)PACKED);
        if (pair == NULL || PyList_Append(touched, pair) < 0) {
            Py_XDECREF(pair);
            goto done;
        }
        Py_DECREF(pair);
    }
    result = PyTuple_Pack(2, rest, touched);
done:
    if (paths != NULL)
        for (size_t i = 0; i < room; i++) { /* beyond count too: a fill that failed midway */
            Py_XDECREF(paths[i].owned);
            Py_XDECREF(paths[i].path);
        }
    PyMem_Free(items);
    PyMem_Free(paths);
    PyMem_Free(packed);
    Py_XDECREF(rest);
    Py_XDECREF(touched);
    Py_DECREF(root_obj);
    return result;
}

/* ---- a Table's touched files ------------------------------------------------------------------
 *
 * stat_pass hands them back as one bytes object of RECORD-byte records, about 44 bytes a file
 * where a (path, packed) pair costs about 200: after a build touched all of a large checkout,
 * that is every entry.  These read them. */

/* The records of buffer view against table t: their count, or -1 with an exception set. */
static Py_ssize_t records_check(const TableObject *t, const Py_buffer *view) {
    if (view->len % RECORD != 0) {
        PyErr_SetString(PyExc_ValueError, "records: not a whole number of records");
        return -1;
    }
    Py_ssize_t n = view->len / RECORD;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t k;
        memcpy(&k, (const unsigned char *)view->buf + i * RECORD, 4);
        if ((Py_ssize_t)k >= t->n) {
            PyErr_SetString(PyExc_ValueError, "records: an entry the table does not have");
            return -1;
        }
    }
    return n;
}

static const TEntry *record_entry(const TableObject *t, const unsigned char *record) {
    uint32_t k;
    memcpy(&k, record, 4);
    return &t->entries[k];
}

PyDoc_STRVAR(record_pairs_doc,
             "record_pairs(table, records) -> [(path, packed stat), ...] of stat_pass's records.");

static PyObject *record_pairs(PyObject *self, PyObject *args) {
    (void)self;
    TableObject *t;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "O!y*", &TableType, &t, &view)) return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = records_check(t, &view);
    if (n >= 0) out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        const unsigned char *r = (const unsigned char *)view.buf + i * RECORD;
        PyObject *pair = Py_BuildValue("(Ny#)", entry_path(t, record_entry(t, r)),
                                       (const char *)r + 4, (Py_ssize_t)40);
        if (pair == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, pair);
    }
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(records_split_doc,
             "records_split(table, records, drop) -> (kept records, [path, ...])\n\n"
             "The records whose path is not in drop (any container of paths), and the paths of\n"
             "those that are.");

static PyObject *records_split(PyObject *self, PyObject *args) {
    (void)self;
    TableObject *t;
    Py_buffer view;
    PyObject *drop;
    if (!PyArg_ParseTuple(args, "O!y*O", &TableType, &t, &view, &drop)) return NULL;
    PyObject *dropped = NULL, *kept = NULL, *result = NULL;
    unsigned char *out = NULL;
    Py_ssize_t n = records_check(t, &view), nkept = 0;
    if (n < 0) goto done;
    dropped = PyList_New(0);
    out = malloc((size_t)(n ? n : 1) * RECORD);
    if (dropped == NULL || out == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *r = (const unsigned char *)view.buf + i * RECORD;
        PyObject *path = entry_path(t, record_entry(t, r));
        if (path == NULL) goto done;
        int in = PySequence_Contains(drop, path);
        if (in == 0) memcpy(out + (nkept++) * RECORD, r, RECORD);
        int bad = in < 0 || (in > 0 && PyList_Append(dropped, path) < 0);
        Py_DECREF(path);
        if (bad) goto done;
    }
    kept = PyBytes_FromStringAndSize((const char *)out, nkept * RECORD);
    if (kept != NULL) result = PyTuple_Pack(2, kept, dropped);
done:
    PyBuffer_Release(&view);
    free(out);
    Py_XDECREF(kept);
    Py_XDECREF(dropped);
    return result;
}

PyDoc_STRVAR(path_records_doc,
             "path_records(table, pairs) -> records\n\n"
             "Records, as stat_pass makes them, of (path, packed stat) pairs; KeyError for a\n"
             "path the table does not have.");

static PyObject *path_records(PyObject *self, PyObject *args) {
    (void)self;
    TableObject *t;
    PyObject *pairs, *pair, *out = NULL;
    if (!PyArg_ParseTuple(args, "O!O", &TableType, &t, &pairs)) return NULL;
    PyObject *it = PyObject_GetIter(pairs);
    if (it == NULL) return NULL;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    while ((pair = PyIter_Next(it)) != NULL) {
        PyObject *path;
        const char *packed;
        Py_ssize_t packed_len;
        Py_ssize_t k = -1;
        if (PyArg_ParseTuple(pair, "Oy#", &path, &packed, &packed_len) && packed_len == 40) {
            k = table_lookup(t, path);
            if (k < 0 && !PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, path);
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "path_records: packed stat data is 40 bytes");
        }
        if (k >= 0 && n == cap) {
            cap = cap ? cap * 2 : 64;
            unsigned char *grown = realloc(buf, cap * RECORD);
            if (grown == NULL) {
                PyErr_NoMemory();
                k = -1;
            } else {
                buf = grown;
            }
        }
        if (k >= 0) {
            uint32_t entry = (uint32_t)k;
            memcpy(buf + n * RECORD, &entry, 4);
            memcpy(buf + n * RECORD + 4, packed, 40);
            n++;
        }
        Py_DECREF(pair);
        if (k < 0) break;
    }
    Py_DECREF(it);
    if (!PyErr_Occurred()) out = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)(n * RECORD));
    free(buf);
    return out;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

PyDoc_STRVAR(patch_stat_doc,
             "patch_stat(data, table, records) -> None\n\n"
             "Write each record's stat data into its entry of data, a writable copy of the index\n"
             "file the table was parsed from (the caller makes sure it is that file), as git\n"
             "stores it: ten big-endian 32-bit words at the start of the entry.  The trailing\n"
             "checksum is the caller's to renew.");

static PyObject *patch_stat(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, view;
    TableObject *t;
    if (!PyArg_ParseTuple(args, "w*O!y*", &data, &TableType, &t, &view)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = records_check(t, &view);
    if (n < 0) goto done;
    if (t->repeated) {
        PyErr_SetString(PyExc_ValueError, "patch_stat: the index lists a path twice");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *r = (const unsigned char *)view.buf + i * RECORD;
        const TEntry *e = record_entry(t, r);
        if (e->at < 12 || e->at > data.len - 20 - ON_DISK) {
            PyErr_SetString(PyExc_ValueError, "patch_stat: an entry outside the data");
            goto done;
        }
        uint32_t fields[10];
        memcpy(fields, r + 4, 40);
        for (int f = 0; f < 10; f++)
            put_be32((unsigned char *)data.buf + e->at + 4 * f, fields[f]);
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&view);
    return result;
}

/* ---- facts about many paths ---------------------------------------------------------------- */

/* Index of the last '/' in s, or -1. */
static Py_ssize_t last_slash(PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    return n ? PyUnicode_FindChar(s, '/', 0, n, -1) : -1;
}

/* Add ``dir`` and each of its ancestors not yet in ``dirs``. */
static int add_with_ancestors(PyObject *dirs, PyObject *dir) {
    Py_INCREF(dir);
    for (;;) {
        int has = PySet_Contains(dirs, dir);
        if (has != 0) {
            Py_DECREF(dir);
            return has < 0 ? -1 : 0;
        }
        if (PySet_Add(dirs, dir) < 0) {
            Py_DECREF(dir);
            return -1;
        }
        Py_ssize_t cut = last_slash(dir);
        if (cut == -2) {
            Py_DECREF(dir);
            return -1;
        }
        if (cut <= 0) break;
        PyObject *up = PyUnicode_Substring(dir, 0, cut);
        Py_DECREF(dir);
        if (up == NULL) return -1;
        dir = up;
    }
    Py_DECREF(dir);
    return 0;
}

PyDoc_STRVAR(tree_facts_doc,
             "tree_facts(paths) -> (dirs, attributes)\n\n"
             "plan.tree_dirs and filters.attribute_paths in one pass: every leading directory\n"
             "of the paths, and the paths that are .gitattributes files.");

static PyObject *tree_facts_table(TableObject *t) {
    PyObject *dirs = PySet_New(NULL), *attributes = PyList_New(0), *result = NULL;
    const char *previous = NULL;
    size_t previous_len = 0;
    static const char name[] = ".gitattributes";
    const size_t name_len = sizeof name - 1;
    if (dirs == NULL || attributes == NULL) goto done;
    for (Py_ssize_t k = 0; k < t->n; k++) {
        const TEntry *e = &t->entries[k];
        const char *p = t->names + e->name_off;
        size_t n = e->name_len, cut = n;
        while (cut > 0 && p[cut - 1] != '/') cut--;
        if (n >= name_len && memcmp(p + n - name_len, name, name_len) == 0 &&
            (n == name_len || p[n - name_len - 1] == '/')) {
            PyObject *path = entry_path(t, e);
            if (path == NULL || PyList_Append(attributes, path) < 0) {
                Py_XDECREF(path);
                goto done;
            }
            Py_DECREF(path);
        }
        if (cut <= 1) continue; /* no parent ("x"), or an empty one ("/x") */
        cut--;                  /* the parent, without its slash */
        if (previous != NULL && previous_len == cut && memcmp(previous, p, cut) == 0) continue;
        PyObject *parent = PyUnicode_DecodeFSDefaultAndSize(p, (Py_ssize_t)cut);
        int bad = parent == NULL || add_with_ancestors(dirs, parent) < 0;
        Py_XDECREF(parent);
        if (bad) goto done;
        previous = p;
        previous_len = cut;
    }
    result = PyTuple_Pack(2, dirs, attributes);
done:
    Py_XDECREF(dirs);
    Py_XDECREF(attributes);
    return result;
}

static PyObject *tree_facts(PyObject *self, PyObject *paths) {
    (void)self;
    if (PyObject_TypeCheck(paths, &TableType)) return tree_facts_table((TableObject *)paths);
    PyObject *it = PyObject_GetIter(paths);
    if (it == NULL) return NULL;
    PyObject *dirs = PySet_New(NULL), *attributes = PyList_New(0), *result = NULL;
    PyObject *name = PyUnicode_FromString(".gitattributes");
    PyObject *previous = NULL; /* the last parent added: consecutive paths share it */
    PyObject *path;
    if (dirs == NULL || attributes == NULL || name == NULL) goto done;
    while ((path = PyIter_Next(it)) != NULL) {
        if (!PyUnicode_Check(path)) {
            PyErr_SetString(PyExc_TypeError, "paths must be str");
            Py_DECREF(path);
            goto done;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(path), cut = last_slash(path);
        if (cut == -2) {
            Py_DECREF(path);
            goto done;
        }
        /* ".gitattributes" itself or ending in "/.gitattributes" */
        if (n >= 14 && PyUnicode_Tailmatch(path, name, n - 14, n, 1) == 1 &&
            (n == 14 || PyUnicode_READ_CHAR(path, n - 15) == '/')) {
            if (PyList_Append(attributes, path) < 0) {
                Py_DECREF(path);
                goto done;
            }
        }
        if (cut > 0 && !(previous != NULL && PyUnicode_GET_LENGTH(previous) == cut &&
                         PyUnicode_Tailmatch(path, previous, 0, cut, -1) == 1)) {
            PyObject *parent = PyUnicode_Substring(path, 0, cut);
            if (parent == NULL || add_with_ancestors(dirs, parent) < 0) {
                Py_XDECREF(parent);
                Py_DECREF(path);
                goto done;
            }
            Py_XSETREF(previous, parent);
        }
        Py_DECREF(path);
    }
    if (!PyErr_Occurred()) result = PyTuple_Pack(2, dirs, attributes);
done:
    Py_DECREF(it);
    Py_XDECREF(previous);
    Py_XDECREF(dirs);
    Py_XDECREF(attributes);
    Py_XDECREF(name);
    return result;
}

PyDoc_STRVAR(dir_sizes_doc,
             "dir_sizes(table) -> {dir: entries below it, at any depth}\n\n"
             "For every leading directory of the entries (plan.IndexFiles.dirs lays a tree's\n"
             "differences over these counts instead of listing the whole tree).");

/* dict[key] += n */
static int add_count(PyObject *dict, PyObject *key, Py_ssize_t n) {
    PyObject *old = PyDict_GetItemWithError(dict, key);
    if (old == NULL && PyErr_Occurred()) return -1;
    Py_ssize_t was = old == NULL ? 0 : PyLong_AsSsize_t(old);
    if (was == -1 && PyErr_Occurred()) return -1;
    PyObject *now = PyLong_FromSsize_t(was + n);
    if (now == NULL) return -1;
    int bad = PyDict_SetItem(dict, key, now);
    Py_DECREF(now);
    return bad;
}

static int flush_run(PyObject *immediate, const char *parent, size_t len, Py_ssize_t run) {
    if (parent == NULL || run == 0) return 0;
    PyObject *key = PyUnicode_DecodeFSDefaultAndSize(parent, (Py_ssize_t)len);
    if (key == NULL) return -1;
    int bad = add_count(immediate, key, run);
    Py_DECREF(key);
    return bad;
}

static PyObject *dir_sizes(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyObject_TypeCheck(arg, &TableType)) {
        PyErr_SetString(PyExc_TypeError, "dir_sizes needs a Table");
        return NULL;
    }
    TableObject *t = (TableObject *)arg;
    PyObject *immediate = PyDict_New(), *sizes = NULL, *result = NULL;
    const char *previous = NULL;
    size_t previous_len = 0;
    Py_ssize_t run = 0;
    if (immediate == NULL) return NULL;
    /* Entries directly in each directory: consecutive entries mostly share their parent. */
    for (Py_ssize_t k = 0; k < t->n; k++) {
        const TEntry *e = &t->entries[k];
        const char *p = t->names + e->name_off;
        size_t cut = e->name_len;
        while (cut > 0 && p[cut - 1] != '/') cut--;
        if (cut <= 1) continue; /* no parent ("x"), or an empty one ("/x"), as tree_facts */
        cut--;
        if (previous != NULL && previous_len == cut && memcmp(previous, p, cut) == 0) {
            run++;
            continue;
        }
        if (flush_run(immediate, previous, previous_len, run) < 0) goto done;
        previous = p;
        previous_len = cut;
        run = 1;
    }
    if (flush_run(immediate, previous, previous_len, run) < 0) goto done;
    /* Then each directory's count to each of its ancestors. */
    sizes = PyDict_Copy(immediate);
    if (sizes == NULL) goto done;
    PyObject *dir, *count;
    Py_ssize_t pos = 0;
    while (PyDict_Next(immediate, &pos, &dir, &count)) {
        Py_ssize_t n = PyLong_AsSsize_t(count), cut = last_slash(dir);
        if (n == -1 && PyErr_Occurred()) goto done;
        while (cut > 0) {
            PyObject *up = PyUnicode_Substring(dir, 0, cut);
            if (up == NULL) goto done;
            int bad = add_count(sizes, up, n);
            cut = bad ? -2 : last_slash(up);
            Py_DECREF(up);
            if (bad || cut == -2) goto done;
        }
        if (cut == -2) goto done;
    }
    result = Py_NewRef(sizes);
done:
    Py_DECREF(immediate);
    Py_XDECREF(sizes);
    return result;
}

PyDoc_STRVAR(with_mode_doc, "with_mode(entries, mode) -> [path, ...] whose entry has mode.");

static PyObject *with_mode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *entries, *path, *value;
    unsigned long wanted;
    if (!PyArg_ParseTuple(args, "Ok", &entries, &wanted)) return NULL;
    PyObject *out = PyList_New(0);
    Py_ssize_t pos = 0;
    if (out == NULL) return NULL;
    if (PyObject_TypeCheck(entries, &TableType)) {
        TableObject *t = (TableObject *)entries;
        for (Py_ssize_t k = 0; k < t->n; k++) {
            const TEntry *e = &t->entries[k];
            if (e->mode != wanted) continue;
            PyObject *p = entry_path(t, e);
            if (p == NULL || PyList_Append(out, p) < 0) {
                Py_XDECREF(p);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(p);
        }
        return out;
    }
    if (!PyDict_Check(entries)) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "entries must be a dict or a Table");
        return NULL;
    }
    while (PyDict_Next(entries, &pos, &path, &value)) {
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) < 1) continue;
        unsigned long mode = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(value, 0));
        if (mode == (unsigned long)-1 && PyErr_Occurred()) {
            Py_DECREF(out);
            return NULL;
        }
        if (mode == wanted && PyList_Append(out, path) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* ---- dirs_holding_others --------------------------------------------------------------- */

typedef struct {
    PyObject *tracked, *tracked_dirs, *holding;
    char path[PATH_BYTES]; /* the directory being read, as bytes relative to the top */
} Walk;

/* The failures that mean "no directory of ours here" (gone, a file, a symlink): anything
 * else (EACCES, EMFILE, EIO, ...) makes the scan raise, and the caller falls back to listing
 * in Python, which fails or succeeds as the walk itself would. */
static int not_a_directory(int err) { return err == ENOENT || err == ENOTDIR || err == ELOOP; }

/* Read directory ``fd`` (``dir`` relative to the top, "" for the top, its bytes the first
 * ``len`` of w->path; fd is consumed).  -1 with an exception set on any failure. */
static int walk_dir(Walk *w, int fd, PyObject *dir, size_t len) {
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(fd);
        return -1;
    }
    int rc = -1, holding = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                goto done;
            }
            break;
        }
        const char *n = e->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
        if (strcmp(n, ".git") == 0) continue; /* never listed by git */
        size_t n_len = strlen(n), at = len ? len + 1 : 0;
        if (at + n_len >= sizeof w->path) {
            PyErr_SetString(PyExc_OSError, "path too long for the native scan");
            goto done;
        }
        if (len) w->path[len] = '/';
        memcpy(w->path + at, n, n_len);
        PyObject *path = PyUnicode_DecodeFSDefaultAndSize(w->path, (Py_ssize_t)(at + n_len));
        if (path == NULL) goto done;
        /* A tracked directory first: a name can be both (a crafted index), and the listing in
         * Python enters every tracked directory. */
        int is_dir = PySet_Contains(w->tracked_dirs, path);
        int tracked = is_dir == 0 ? PySequence_Contains(w->tracked, path) : 0;
        if (is_dir < 0 || tracked < 0) {
            Py_DECREF(path);
            goto done;
        }
        if (is_dir) {
            /* Into real directories only, never through a symlink (O_NOFOLLOW). */
            if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) {
                int sub =
                    open_quiet(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && !not_a_directory(errno)) {
                    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
                    Py_DECREF(path);
                    goto done;
                }
                if (sub >= 0 && walk_dir(w, sub, path, at + n_len) < 0) {
                    Py_DECREF(path);
                    goto done;
                }
            }
        } else if (!tracked && !holding) {
            holding = 1;
            if (PyList_Append(w->holding, dir) < 0) {
                Py_DECREF(path);
                goto done;
            }
        }
        Py_DECREF(path);
    }
    rc = 0;
done:
    closedir(d);
    return rc;
}

PyDoc_STRVAR(
    dirs_holding_others_doc,
    "dirs_holding_others(root, tracked, tracked_dirs) -> [dir, ...]\n\n"
    "The directories reached from root through tracked_dirs (real directories only) that hold\n"
    "a name which is neither in tracked nor in tracked_dirs (nor .git); \"\" is the top.");

static PyObject *dirs_holding_others(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *root, *tracked, *tracked_dirs;
    if (!PyArg_ParseTuple(args, "O&OO!", PyUnicode_FSConverter, &root, &tracked, &PySet_Type,
                          &tracked_dirs))
        return NULL;
    Walk walk = {tracked, tracked_dirs, PyList_New(0), {0}}, *w = &walk;
    PyObject *top = PyUnicode_FromString("");
    PyObject *result = NULL;
    if (w->holding == NULL || top == NULL) goto done;
    int fd = open_quiet(AT_FDCWD, PyBytes_AS_STRING(root),
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (not_a_directory(errno))
            result = Py_NewRef(w->holding); /* no top directory: nothing to list */
        else
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, root);
        goto done;
    }
    if (walk_dir(w, fd, top, 0) == 0) result = Py_NewRef(w->holding);
done:
    Py_DECREF(root);
    Py_XDECREF(top);
    Py_XDECREF(w->holding);
    return result;
}

/* ---- the same pre-scan without the interpreter, in threads --------------------------------
 *
 * When the target is the index itself (nothing laid over it), "tracked" and "a tracked
 * directory" are questions about the Table's bytes, so the directory reads can run in several
 * threads with the GIL released, as git's own untracked walk cannot but its preload can.
 */

typedef struct {
    const TableObject *t;
    uint64_t *slots; /* (entry index << 32 | prefix length) + 1, 0 empty */
    size_t nslots;
} DirSet;

static int dirset_has(const DirSet *d, const char *s, size_t n) {
    size_t mask = d->nslots - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        uint64_t slot = d->slots[i];
        if (slot == 0) return 0;
        const TEntry *e = &d->t->entries[(slot - 1) >> 32];
        size_t len = (size_t)((slot - 1) & 0xFFFFFFFFu);
        if (len == n && memcmp(d->t->names + e->name_off, s, n) == 0) return 1;
        i = (i + 1) & mask;
    }
}

/* The length of entry k's parent directory if it has one and the entry before it has another,
 * else 0: only those entries can bring directories the set does not hold yet. */
static size_t new_parent(const TableObject *t, Py_ssize_t k) {
    const TEntry *e = &t->entries[k];
    const char *p = t->names + e->name_off;
    size_t parent = e->name_len;
    while (parent > 0 && p[parent - 1] != '/') parent--;
    if (parent == 0) return 0;
    parent--;
    if (k > 0) {
        const TEntry *b = &t->entries[k - 1];
        const char *q = t->names + b->name_off;
        if (b->name_len > parent && q[parent] == '/' && memcmp(p, q, parent) == 0 &&
            memchr(q + parent + 1, '/', b->name_len - parent - 1) == NULL)
            return 0;
    }
    return parent;
}

/* Every leading directory of the Table's paths; -1 when out of memory. */
static int dirset_build(DirSet *d, const TableObject *t) {
    /* No more directories than the slashes of the entries that may bring new ones: a table at
     * most half full without regrowth, sized by what it holds (a thousand directories, not the
     * 200,000 slashes of 50,000 paths), as its slots are all written before use. */
    size_t slashes = 0;
    for (Py_ssize_t k = 0; k < t->n; k++) {
        size_t parent = new_parent(t, k);
        const char *p = t->names + t->entries[k].name_off;
        for (size_t i = 0; i < parent; i++) slashes += p[i] == '/';
        slashes += parent > 0;
    }
    d->t = t;
    d->nslots = 1024;
    while (d->nslots < slashes * 2 + 2) d->nslots *= 2;
    d->slots = zeroed(d->nslots, sizeof *d->slots);
    if (d->slots == NULL) return -1;
    for (Py_ssize_t k = 0; k < t->n; k++) {
        size_t parent = new_parent(t, k);
        if (parent == 0) continue;
        const char *p = t->names + t->entries[k].name_off;
        for (size_t len = 1; len <= parent; len++) {
            if (len != parent && p[len] != '/') continue;
            if (dirset_has(d, p, len)) continue;
            size_t i = (size_t)hash_bytes(p, len) & (d->nslots - 1);
            while (d->slots[i]) i = (i + 1) & (d->nslots - 1);
            d->slots[i] = (((uint64_t)k << 32) | len) + 1;
        }
    }
    return 0;
}

typedef struct {
    char *path; /* relative to the top, "" for the top */
    size_t len;
} Task;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t more;
    Task *queue, *holding;
    size_t queued, queue_cap, held, holding_cap;
    int busy, failed; /* failed: the errno of the first failure, 0 for none */
    int sorted;       /* the Table's paths are in byte order, as an index file keeps them */
    const TableObject *t;
    const DirSet *dirs;
    const char *root;
    size_t root_len;
} Scan;

/* Byte order of two paths, git's index order. */
static int path_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* The first entry in [lo, hi) whose path is not below s (n bytes); the Table sorted. */
static Py_ssize_t table_lower(const TableObject *t, Py_ssize_t lo, Py_ssize_t hi, const char *s,
                              size_t n) {
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        const TEntry *e = &t->entries[mid];
        if (path_cmp(t->names + e->name_off, e->name_len, s, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int table_sorted(const TableObject *t) {
    for (Py_ssize_t k = 1; k < t->n; k++) {
        const TEntry *a = &t->entries[k - 1], *b = &t->entries[k];
        if (path_cmp(t->names + a->name_off, a->name_len, t->names + b->name_off, b->name_len) >= 0)
            return 0;
    }
    return 1;
}

static int push(Task **list, size_t *len, size_t *cap, const char *path, size_t n) {
    if (*len == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 256;
        Task *grown = realloc(*list, grown_cap * sizeof *grown);
        if (grown == NULL) return -1;
        *list = grown;
        *cap = grown_cap;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) return -1;
    memcpy(copy, path, n);
    copy[n] = '\0';
    (*list)[(*len)++] = (Task){copy, n};
    return 0;
}

/* Read one directory: queue its tracked subdirectories, note it if it holds anything else.
 * *failed gets the errno of a failure the one-thread scan would raise for (0: none). */
static void scan_one(Scan *sc, Task task, Task **found, size_t *nfound, size_t *found_cap,
                     int *holds, int *failed) {
    char full[PATH_BYTES * 2];
    if (sc->root_len + 1 + task.len >= sizeof full) {
        *failed = ENAMETOOLONG;
        return;
    }
    memcpy(full, sc->root, sc->root_len);
    full[sc->root_len] = '/';
    memcpy(full + sc->root_len + 1, task.path, task.len + 1);
    int fd = open_quiet(AT_FDCWD, task.len ? full : sc->root,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (!not_a_directory(errno)) *failed = errno;
        return;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        *failed = errno ? errno : EIO;
        close(fd);
        return;
    }
    char child[PATH_BYTES];
    /* In a sorted Table the paths below this directory are one run, [lo, hi): a name is
     * looked up there, among entries that are near each other in memory, instead of through
     * the hash slots, whose every probe is a cache miss (a third of this scan's time at
     * 200,000 files). */
    Py_ssize_t lo = 0, hi = sc->t->n;
    if (sc->sorted && task.len) {
        if (task.len + 1 >= sizeof child) {
            *failed = ENAMETOOLONG;
            closedir(d);
            return;
        }
        memcpy(child, task.path, task.len);
        child[task.len] = '/';
        lo = table_lower(sc->t, 0, hi, child, task.len + 1);
        child[task.len] = '/' + 1; /* just past every path that starts "dir/" */
        hi = table_lower(sc->t, lo, hi, child, task.len + 1);
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0) *failed = errno;
            break;
        }
        const char *n = e->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
        if (strcmp(n, ".git") == 0) continue; /* never listed by git */
        size_t n_len = strlen(n), at = task.len ? task.len + 1 : 0;
        if (at + n_len >= sizeof child) {
            *failed = ENAMETOOLONG;
            break;
        }
        memcpy(child, task.path, task.len);
        if (task.len) child[task.len] = '/';
        memcpy(child + at, n, n_len);
        size_t c_len = at + n_len;
        int tracked_dir, tracked;
        if (sc->sorted && c_len + 1 < sizeof child) {
            /* A tracked directory: some path below it, "child/...", in the run; a tracked
             * file: the path itself. */
            child[c_len] = '/';
            Py_ssize_t k = table_lower(sc->t, lo, hi, child, c_len + 1);
            const TEntry *x = k < hi ? &sc->t->entries[k] : NULL;
            tracked_dir = x != NULL && x->name_len > c_len + 1 &&
                          memcmp(sc->t->names + x->name_off, child, c_len + 1) == 0;
            k = table_lower(sc->t, lo, k, child, c_len);
            x = k < hi ? &sc->t->entries[k] : NULL;
            tracked = x != NULL && path_cmp(sc->t->names + x->name_off, x->name_len, child,
                                            c_len) == 0;
        } else {
            tracked_dir = dirset_has(sc->dirs, child, c_len);
            tracked = !tracked_dir && table_find(sc->t, child, c_len) >= 0;
        }
        if (tracked_dir) { /* tracked directories first, as above */
            if ((e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) &&
                push(found, nfound, found_cap, child, c_len) < 0)
                *failed = ENOMEM;
            continue;
        }
        if (tracked) continue;
        *holds = 1;
    }
    closedir(d);
}

static void *scan_worker(void *arg) {
    Scan *sc = arg;
    Task *found = NULL;
    size_t found_cap = 0;
    pthread_mutex_lock(&sc->lock);
    for (;;) {
        while (sc->queued == 0 && sc->busy > 0) pthread_cond_wait(&sc->more, &sc->lock);
        /* Nothing queued and nobody left to queue more, or a failure: the caller lists in
         * Python then, so reading on is wasted. */
        if (sc->queued == 0 || sc->failed) break;
        Task task = sc->queue[--sc->queued];
        sc->busy++;
        pthread_mutex_unlock(&sc->lock);
        size_t nfound = 0;
        int holds = 0, failed = 0;
        scan_one(sc, task, &found, &nfound, &found_cap, &holds, &failed);
        pthread_mutex_lock(&sc->lock);
        if (failed && !sc->failed) sc->failed = failed;
        for (size_t i = 0; i < nfound; i++) {
            if (sc->queued == sc->queue_cap) {
                size_t cap = sc->queue_cap * 2;
                Task *grown = realloc(sc->queue, cap * sizeof *grown);
                if (grown == NULL) {
                    sc->failed = ENOMEM;
                    free(found[i].path);
                    continue;
                }
                sc->queue = grown;
                sc->queue_cap = cap;
            }
            sc->queue[sc->queued++] = found[i];
        }
        if (holds && push(&sc->holding, &sc->held, &sc->holding_cap, task.path, task.len) < 0)
            sc->failed = ENOMEM;
        free(task.path);
        sc->busy--;
        pthread_cond_broadcast(&sc->more);
    }
    pthread_mutex_unlock(&sc->lock);
    free(found);
    return NULL;
}

PyDoc_STRVAR(
    table_dirs_holding_others_doc,
    "table_dirs_holding_others(root, table, threads) -> [dir, ...]\n\n"
    "dirs_holding_others(root, table, the table's own directories), read in threads.");

/* The pre-scan of root against t, made ready: 0, or -1 when out of memory.  scan_free
 * releases it either way.  No Python API. */
static int scan_setup(Scan *sc, DirSet *dirs, const TableObject *t, const char *root,
                      size_t root_len) {
    *sc = (Scan){.t = t, .dirs = dirs, .root = root, .root_len = root_len};
    pthread_mutex_init(&sc->lock, NULL);
    pthread_cond_init(&sc->more, NULL);
    while (sc->root_len > 1 && sc->root[sc->root_len - 1] == '/') sc->root_len--;
    sc->queue_cap = 256;
    sc->queue = malloc(sc->queue_cap * sizeof *sc->queue);
    sc->sorted = table_sorted(t);
    /* The directory set serves an unsorted Table only (see scan_one). */
    int built = sc->queue != NULL && (sc->sorted || dirset_build(dirs, t) == 0);
    return built && push(&sc->queue, &sc->queued, &sc->queue_cap, "", 0) == 0 ? 0 : -1;
}

/* Reads every directory the scan reaches, in up to threads threads.  No Python API. */
static void scan_run(Scan *sc, int threads) {
    if (threads < 1) threads = 1;
    if (threads > 16) threads = 16;
    pthread_t tids[16];
    int started[16] = {0};
    for (int i = 1; i < threads; i++)
        started[i] = pthread_create(&tids[i], NULL, scan_worker, sc) == 0;
    scan_worker(sc);
    for (int i = 1; i < threads; i++)
        if (started[i]) pthread_join(tids[i], NULL);
}

/* The directories found holding others, or NULL with the scan's failure set as OSError
 * (MemoryError for ENOMEM). */
static PyObject *scan_answer(const Scan *sc) {
    if (sc->failed) {
        errno = sc->failed;
        return PyErr_SetFromErrno(sc->failed == ENOMEM ? PyExc_MemoryError : PyExc_OSError);
    }
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < sc->held; i++) {
        PyObject *dir = PyUnicode_DecodeFSDefaultAndSize(sc->holding[i].path,
                                                         (Py_ssize_t)sc->holding[i].len);
        if (dir == NULL || PyList_Append(result, dir) < 0) Py_CLEAR(result);
        Py_XDECREF(dir);
    }
    return result;
}

static void scan_free(Scan *sc, DirSet *dirs) {
    for (size_t i = 0; i < sc->queued; i++) free(sc->queue[i].path);
    for (size_t i = 0; i < sc->held; i++) free(sc->holding[i].path);
    free(sc->queue);
    free(sc->holding);
    free(dirs->slots);
    pthread_mutex_destroy(&sc->lock);
    pthread_cond_destroy(&sc->more);
}

static PyObject *table_dirs_holding_others(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *root, *table, *result = NULL;
    int threads;
    if (!PyArg_ParseTuple(args, "O&O!i", PyUnicode_FSConverter, &root, &TableType, &table,
                          &threads))
        return NULL;
    DirSet dirs = {0};
    Scan sc;
    if (scan_setup(&sc, &dirs, (TableObject *)table, PyBytes_AS_STRING(root),
                   (size_t)PyBytes_GET_SIZE(root)) < 0)
        PyErr_NoMemory();
    else {
        Py_BEGIN_ALLOW_THREADS;
        scan_run(&sc, threads);
        Py_END_ALLOW_THREADS;
        result = scan_answer(&sc);
    }
    scan_free(&sc, &dirs);
    Py_DECREF(root);
    return result;
}

/* ---- prescan: the early reads in one call ------------------------------------------------ */

PyDoc_STRVAR(
    prescan_doc,
    "prescan(fd, size, mtime_ns, ctime_ns, root, filemode, threads)\n"
    "    -> (ends, parsed, rest, touched, holding) or None\n\n"
    "gitsafe.prescan's reads in one call, without the GIL from the first byte read to the last\n"
    "directory listed.  With data the index file open at fd, which fstat gave as size bytes\n"
    "with mtime_ns and ctime_ns: ends is data[:12] + data[parsed[4]:], the header and what\n"
    "follows the entries (the stat pass's items reuse the file's buffer);\n"
    "parsed is parse_index(data); (rest, touched) is stat_pass(the\n"
    "parsed table, None, root, mtime_ns, filemode, threads); holding is\n"
    "table_dirs_holding_others(root, table, threads), or None where that raises OSError.  None\n"
    "when the file is not the one fstat described, its checksum is wrong, or parse_index would\n"
    "answer None.");

/* Reads exactly size bytes of fd into buf, and checks that the file is still the one fstat
 * described: no byte more, the same size and times.  No Python API. */
static int read_whole(int fd, char *buf, Py_ssize_t size, long long mtime_ns,
                      long long ctime_ns) {
    Py_ssize_t got = 0;
    ssize_t r;
    while (got < size) {
        r = pread(fd, buf + got, (size_t)(size - got), (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        got += r;
    }
    char more;
    do r = pread(fd, &more, 1, (off_t)size);
    while (r < 0 && errno == EINTR);
    struct stat s;
    return r == 0 && fstat(fd, &s) == 0 && s.st_size == size &&
           (long long)s.st_mtim.tv_sec * NS + s.st_mtim.tv_nsec == mtime_ns &&
           (long long)s.st_ctim.tv_sec * NS + s.st_ctim.tv_nsec == ctime_ns;
}

/* index_file.checksum_ok: the trailer is the SHA-1 of everything before it. */
static int checksum_ok(const unsigned char *data, Py_ssize_t len, const EVP_MD *sha1) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    return len >= 32 && sha1 != NULL &&
           EVP_Digest(data, (size_t)(len - 20), md, &n, sha1, NULL) == 1 && n == 20 &&
           memcmp(md, data + len - 20, 20) == 0;
}

static PyObject *prescan(PyObject *self, PyObject *args) {
    (void)self;
    int fd, filemode, threads;
    Py_ssize_t size;
    long long mtime_ns, ctime_ns;
    PyObject *root;
    if (!PyArg_ParseTuple(args, "inLLO&pi", &fd, &size, &mtime_ns, &ctime_ns,
                          PyUnicode_FSConverter, &root, &filemode, &threads))
        return NULL;
    if (size < 0) {
        Py_DECREF(root);
        PyErr_SetString(PyExc_ValueError, "prescan: a negative size");
        return NULL;
    }
    PyObject *result = NULL;
    TableObject *table = table_new();
    char *buf = malloc((size_t)size + 1), *ends = NULL;
    if (table == NULL || buf == NULL) {
        Py_XDECREF(table);
        free(buf);
        Py_DECREF(root);
        return table == NULL ? NULL : PyErr_NoMemory();
    }
    const unsigned char *bytes = (const unsigned char *)buf;
    const char *top = PyBytes_AS_STRING(root);
    size_t top_len = (size_t)PyBytes_GET_SIZE(root);
    Specials sp = {0};
    Item *items = NULL;
    unsigned char *packed = NULL;
    Py_ssize_t *others = NULL, count = 0, nothers = 0, end = 0, ends_len = 0;
    DirSet dirs = {0};
    Scan sc;
    /* state: 1 read and parsed, 0 not the file or not an index parse_index takes, -1 out of
     * memory; scanned: -2 no scan set up, else scan_setup's answer */
    int state = 0, scanned = -2, marked = 0, root_ok = 0, in_buf = 0;
    Sha1 *sha1 = sha1_get();
    Py_BEGIN_ALLOW_THREADS;
    if (sha1 != NULL && read_whole(fd, buf, size, mtime_ns, ctime_ns) &&
        checksum_ok(bytes, size, sha1))
        state = parse_entries(bytes, size, table, &sp, &marked, &end);
    /* Entries whose last name runs into the checksum (possible only in a damaged file, and
     * parse_index reports the same end): the Python path's tail() finds no whole index there,
     * so the plan reads the file itself. */
    if (state == 1 && end > size) state = 0;
    if (state == 1) {
        ends_len = 12 + (size - end);
        if ((ends = malloc((size_t)ends_len)) == NULL) state = -1;
        else {
            memcpy(ends, buf, 12);
            memcpy(ends + 12, buf + end, (size_t)(size - end));
        }
    }
    if (state == 1) {
        /* The file's bytes are done with (the Table holds its own copy of the names), and the
         * read has faulted their pages in: the items and the others go there when they fit,
         * as they do in any index git writes (an entry takes at least 62 bytes of the file,
         * an item and an other 48).  Fresh pages would cost a fault each, 4 MB of them at
         * 50,000 files. */
        size_t n = (size_t)(table->n ? table->n : 1);
        if (n * (sizeof *items + sizeof *others) <= (size_t)size + 1) {
            items = (Item *)(void *)buf;
            others = (Py_ssize_t *)(void *)(buf + n * sizeof *items);
            in_buf = 1;
        } else {
            items = malloc(n * sizeof *items);
            others = malloc(n * sizeof *others);
        }
        packed = malloc(n * PACKED); /* written only for touched files */
        if (items == NULL || others == NULL || packed == NULL) state = -1;
    }
    if (state == 1) {
        count = table_stat_items(table, NULL, items, others, &nothers);
        root_ok = stat_items(top, items, packed, count, mtime_ns, filemode, sha1, threads);
        scanned = scan_setup(&sc, &dirs, table, top, top_len);
        if (scanned == 0) scan_run(&sc, threads);
    }
    Py_END_ALLOW_THREADS;
    sha1_put(sha1);
    if (state < 0 || scanned == -1)
        PyErr_NoMemory();
    else if (state == 0)
        result = Py_NewRef(Py_None);
    else {
        PyObject *parsed = parsed_answer(1, table, &sp, marked, end);
        PyObject *stat = NULL, *holding = NULL;
        if (parsed == Py_None)
            result = Py_NewRef(Py_None);
        else if (parsed != NULL &&
                 (stat = table_stat_answer(table, others, nothers, items, packed, count,
                                           root_ok))) {
            holding = scan_answer(&sc);
            if (holding == NULL && PyErr_ExceptionMatches(PyExc_OSError)) {
                PyErr_Clear(); /* the plan lists for itself */
                holding = Py_NewRef(Py_None);
            }
            if (holding != NULL)
                result = Py_BuildValue("(y#OOOO)", ends, ends_len, parsed,
                                       PyTuple_GET_ITEM(stat, 0), PyTuple_GET_ITEM(stat, 1),
                                       holding);
        }
        Py_XDECREF(parsed);
        Py_XDECREF(stat);
        Py_XDECREF(holding);
    }
    if (scanned != -2) scan_free(&sc, &dirs);
    specials_free(&sp);
    if (!in_buf) {
        free(items);
        free(others);
    }
    free(buf);
    free(packed);
    free(ends);
    Py_DECREF(table);
    Py_DECREF(root);
    return result;
}

static PyMethodDef native_methods[] = {
    {"parse_index", parse_index, METH_O, parse_index_doc},
    {"stat_pass", stat_pass, METH_VARARGS, stat_pass_doc},
    {"record_pairs", record_pairs, METH_VARARGS, record_pairs_doc},
    {"records_split", records_split, METH_VARARGS, records_split_doc},
    {"patch_stat", patch_stat, METH_VARARGS, patch_stat_doc},
    {"path_records", path_records, METH_VARARGS, path_records_doc},
    {"tree_facts", tree_facts, METH_O, tree_facts_doc},
    {"with_mode", with_mode, METH_VARARGS, with_mode_doc},
    {"dir_sizes", dir_sizes, METH_O, dir_sizes_doc},
    {"dirs_holding_others", dirs_holding_others, METH_VARARGS, dirs_holding_others_doc},
    {"table_dirs_holding_others", table_dirs_holding_others, METH_VARARGS,
     table_dirs_holding_others_doc},
    {"prescan", prescan, METH_VARARGS, prescan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "gitsafe._native",
    "Per-path loops of gitsafe in C; see gitsafe/index_stat.py for the reference.", -1,
    native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    for (int i = 0; i < 4; i++) {
        common_modes[i] = PyLong_FromUnsignedLong(common_mode_values[i]);
        if (common_modes[i] == NULL) return NULL;
    }
    if (PyType_Ready(&TableType) < 0 || PyType_Ready(&TableIterType) < 0) return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module != NULL && (PyModule_AddObjectRef(module, "Table", (PyObject *)&TableType) < 0 ||
                           PyModule_AddIntConstant(module, "RECORD_SIZE", RECORD) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
