/* gitsafe._native: the two loops that touch every tracked path, in C.
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

/* Build the Python values for one entry and file them; 0 on success, -1 on a Python error. */
static int file_entry(PyObject *entries, PyObject *staged, PyObject *skip_worktree,
                      const unsigned char *e, const char *name, Py_ssize_t name_len,
                      unsigned flags, unsigned extended) {
    uint32_t c_sec = be32(e), c_nsec = be32(e + 4), m_sec = be32(e + 8), m_nsec = be32(e + 12);
    uint32_t dev = be32(e + 16), ino = be32(e + 20), mode = be32(e + 24), uid = be32(e + 28);
    uint32_t gid = be32(e + 32), size = be32(e + 36);
    int rc = -1;
    PyObject *path = PyUnicode_DecodeFSDefaultAndSize(name, name_len);
    PyObject *value = NULL;
    if (path == NULL) goto done;
    if ((extended & SKIP_WORKTREE) && PyList_Append(skip_worktree, path) < 0) goto done;
    if (flags & STAGE_MASK) {
        PyObject *stat[9] = {
            PyLong_FromUnsignedLong(c_sec), PyLong_FromUnsignedLong(c_nsec),
            PyLong_FromUnsignedLong(m_sec), PyLong_FromUnsignedLong(m_nsec),
            PyLong_FromUnsignedLong(dev),   PyLong_FromUnsignedLong(ino),
            PyLong_FromUnsignedLong(uid),   PyLong_FromUnsignedLong(gid),
            PyLong_FromUnsignedLong(size),
        };
        PyObject *fields[5] = {
            Py_NewRef(path),
            mode_object(mode),
            PyBytes_FromStringAndSize((const char *)e + 40, 20),
            PyLong_FromUnsignedLong((flags & STAGE_MASK) >> STAGE_SHIFT),
            tuple_of(9, stat),
        };
        value = tuple_of(5, fields);
        if (value == NULL || PyList_Append(staged, value) < 0) goto done;
    } else {
        PyObject *key[6] = {
            PyLong_FromLongLong((long long)m_sec * NS + m_nsec),
            PyLong_FromLongLong((long long)c_sec * NS + c_nsec),
            PyLong_FromUnsignedLong(ino),
            PyLong_FromUnsignedLong(size),
            PyLong_FromUnsignedLong(uid),
            PyLong_FromUnsignedLong(gid),
        };
        PyObject *fields[3] = {
            mode_object(mode),
            PyBytes_FromStringAndSize((const char *)e + 40, 20),
            tuple_of(6, key),
        };
        value = tuple_of(3, fields);
        if (value == NULL || PyDict_SetItem(entries, path, value) < 0) goto done;
    }
    rc = 0;
done:
    Py_XDECREF(path);
    Py_XDECREF(value);
    return rc;
}

PyDoc_STRVAR(parse_index_doc,
             "parse_index(data) -> (entries, staged, skip_worktree, marked, end) or None\n\n"
             "index_stat._parse in C; staged entries come as (path, mode, oid, stage, stat).");

static PyObject *parse_index(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t len = view.len;
    PyObject *entries = PyDict_New(), *staged = PyList_New(0), *skip = PyList_New(0);
    PyObject *result = NULL;
    char *previous = NULL, *name = NULL;
    Py_ssize_t previous_len = 0, name_cap = 0;
    int marked = 0, malformed = 1, gc_was_enabled = 0;
    if (entries == NULL || staged == NULL || skip == NULL) goto done;
    if (len < 12 || memcmp(data, "DIRC", 4) != 0) goto done;
    uint32_t version = be32(data + 4), count = be32(data + 8);
    if (version < 2 || version > 4) goto done;
    /* Tens of thousands of new tuples would run the cyclic collector over and over; none of
     * them can be part of a cycle. */
    gc_was_enabled = PyGC_Disable();
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
            const unsigned char *end = memchr(data + pos, 0, (size_t)(len - pos));
            if (end == NULL) goto done;
            Py_ssize_t suffix = end - (data + pos);
            name_len = previous_len - (Py_ssize_t)strip + suffix;
            if (name_len + 1 > name_cap) {
                name_cap = (name_len + 1) * 2;
                char *grown = realloc(name, (size_t)name_cap);
                char *grown_prev = realloc(previous, (size_t)name_cap);
                if (grown == NULL || grown_prev == NULL) {
                    if (grown) name = grown;
                    if (grown_prev) previous = grown_prev;
                    PyErr_NoMemory();
                    malformed = 0;
                    goto done;
                }
                name = grown;
                previous = grown_prev;
            }
            memcpy(name + (previous_len - strip), data + pos, (size_t)suffix);
            if (previous_len - strip) memcpy(name, previous, (size_t)(previous_len - strip));
            pos = (end - data) + 1;
            memcpy(previous, name, (size_t)name_len);
            previous_len = name_len;
            tail = name;
        } else {
            if (pos > len) goto done;
            const unsigned char *end = memchr(data + pos, 0, (size_t)(len - pos));
            if (end == NULL) goto done;
            name_len = end - (data + pos);
            tail = (const char *)data + pos;
            pos = start + (((end - data) - start + 8) & ~(Py_ssize_t)7);
        }
        if (flags & ASSUME_VALID) marked = 1;
        if (extended & INTENT_TO_ADD) marked = 1;
        if (file_entry(entries, staged, skip, e, tail, name_len, flags, extended) < 0) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear(); /* as the Python parser: hand the file to libgit2 */
                goto done;
            }
            malformed = 0;
            goto done;
        }
    }
    malformed = 0;
    result = Py_BuildValue("(OOOOn)", entries, staged, skip, marked ? Py_True : Py_False, pos);
done:
    if (gc_was_enabled) PyGC_Enable();
    PyBuffer_Release(&view);
    free(previous);
    free(name);
    Py_XDECREF(entries);
    Py_XDECREF(staged);
    Py_XDECREF(skip);
    if (result == NULL && malformed && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

/* ---- stat_pass --------------------------------------------------------------------------- */

enum { CLEAN = 0, REST = 1, TOUCHED = 2 };

typedef struct {
    PyObject *path;   /* borrowed from the entries dict, which the caller keeps alive */
    PyObject *fsname; /* owned: the path as file system bytes */
    uint32_t mode;
    long long key[6]; /* mtime ns, ctime ns, ino, size, uid, gid */
    int result;
    unsigned char packed[40];
} Item;

typedef struct {
    Item *items;
    Py_ssize_t lo, hi;
    const char *root;
    Py_ssize_t root_len;
    long long index_mtime_ns;
    int filemode;
} Chunk;

/* Is ``path`` (relative, NUL-terminated in buf after the root and a slash) a real directory
 * up to component end ``e``?  buf holds "root/path". */
static int real_dir(char *buf, Py_ssize_t at) {
    struct stat s;
    char saved = buf[at];
    buf[at] = '\0';
    int ok = lstat(buf, &s) == 0 && S_ISDIR(s.st_mode);
    buf[at] = saved;
    return ok;
}

/* Python's int(float seconds) as pack_stat computes it: truncation toward zero. */
static long long whole_seconds(const struct timespec *t) {
    return (t->tv_sec < 0 && t->tv_nsec > 0) ? (long long)t->tv_sec + 1 : (long long)t->tv_sec;
}

static void pack(unsigned char *out, const struct stat *s, uint32_t mode) {
    int32_t c_sec = (int32_t)(whole_seconds(&s->st_ctim) & 0x7FFFFFFF);
    int32_t m_sec = (int32_t)(whole_seconds(&s->st_mtim) & 0x7FFFFFFF);
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

static void *scan_chunk(void *arg) {
    Chunk *c = arg;
    Py_ssize_t cap = c->root_len + 2 + 4096;
    char *buf = malloc((size_t)cap);
    /* The last parent directory checked, and whether all of it is real directories. */
    char *last = malloc((size_t)cap);
    Py_ssize_t last_len = -1;
    int last_ok = 0;
    if (buf == NULL || last == NULL) {
        for (Py_ssize_t i = c->lo; i < c->hi; i++) c->items[i].result = REST;
        free(buf);
        free(last);
        return NULL;
    }
    memcpy(buf, c->root, (size_t)c->root_len);
    buf[c->root_len] = '/';
    Py_ssize_t base = c->root_len + 1;
    for (Py_ssize_t i = c->lo; i < c->hi; i++) {
        Item *it = &c->items[i];
        const char *rel = PyBytes_AS_STRING(it->fsname);
        Py_ssize_t rel_len = PyBytes_GET_SIZE(it->fsname);
        if (base + rel_len + 1 > cap || (Py_ssize_t)strlen(rel) != rel_len) {
            it->result = REST; /* too long for one buffer, or an embedded NUL: Python decides */
            continue;
        }
        memcpy(buf + base, rel, (size_t)rel_len + 1);
        Py_ssize_t parent_len = rel_len;
        while (parent_len > 0 && rel[parent_len - 1] != '/') parent_len--;
        parent_len = parent_len > 0 ? parent_len - 1 : 0; /* the parent, without its slash */
        /* Parent check (TreeView.is_dir): every leading component a real directory. */
        int ok;
        if (parent_len == last_len && memcmp(last, rel, (size_t)parent_len) == 0) {
            ok = last_ok;
        } else {
            /* Components that end before ``from`` are directories already checked: the
             * longest leading part this parent shares with the last one, cut at a component
             * boundary of both. */
            Py_ssize_t from = 0;
            if (last_ok && last_len >= 0) {
                Py_ssize_t k = 0, m = parent_len < last_len ? parent_len : last_len;
                while (k < m && rel[k] == last[k]) k++;
                if ((k == last_len || last[k] == '/') && (k == parent_len || rel[k] == '/')) {
                    from = k;
                } else {
                    do k--; while (k > 0 && rel[k] != '/'); /* a '/' below k ends one in both */
                    from = k > 0 ? k : 0;
                }
            }
            ok = 1;
            for (Py_ssize_t j = from + (from > 0 ? 1 : 0); ok && j <= parent_len; j++) {
                if (j == parent_len || rel[j] == '/') {
                    if (j > 0) ok = real_dir(buf, base + j);
                }
            }
            memcpy(last, rel, (size_t)parent_len);
            last_len = parent_len;
            last_ok = ok;
        }
        if (!ok) {
            it->result = REST;
            continue;
        }
        struct stat s;
        if (lstat(buf, &s) != 0) {
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
                   it->key[0] < c->index_mtime_ns;
        if (same) {
            it->result = CLEAN;
        } else if (it->mode != MODE_LINK &&
                   ((unsigned)s.st_mode & 0170100) == (it->mode & 0170100)) {
            it->result = TOUCHED; /* perhaps the same bytes: the caller may hash it */
            pack(it->packed, &s, it->mode);
        } else {
            it->result = REST;
        }
    }
    free(buf);
    free(last);
    return NULL;
}

PyDoc_STRVAR(
    stat_pass_doc,
    "stat_pass(entries, near, root, index_mtime_ns, filemode, threads) -> (rest, touched)\n\n"
    "The stat loop of plan._Analysis.unchanged_elsewhere: rest is every path whose stat data\n"
    "cannot vouch for it (and every path in near or of a submodule); touched holds\n"
    "(path, packed stat) for files of the right type and exec bit whose stat data differs.");

static int as_key(PyObject *tuple, long long key[6]) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != 6) return -1;
    for (int k = 0; k < 6; k++) {
        key[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, k));
        if (key[k] == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

static PyObject *stat_pass(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *entries, *near, *root_obj;
    long long index_mtime_ns;
    int filemode, threads;
    if (!PyArg_ParseTuple(args, "O!OO&Lpi", &PyDict_Type, &entries, &near,
                          PyUnicode_FSConverter, &root_obj, &index_mtime_ns, &filemode,
                          &threads))
        return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(entries), count = 0, pos = 0;
    PyObject *rest = PyList_New(0), *touched = PyList_New(0), *result = NULL;
    Item *items = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Item));
    PyObject *path, *value;
    if (rest == NULL || touched == NULL || items == NULL) {
        if (items == NULL) PyErr_NoMemory();
        goto done;
    }
    while (PyDict_Next(entries, &pos, &path, &value)) {
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3) {
            PyErr_SetString(PyExc_TypeError, "entries values must be (mode, oid, key)");
            goto done;
        }
        unsigned long mode = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(value, 0));
        if (mode == (unsigned long)-1 && PyErr_Occurred()) goto done;
        int in_near = near == Py_None ? 0 : PySequence_Contains(near, path);
        if (in_near < 0) goto done;
        if (in_near || mode == MODE_GITLINK) {
            if (PyList_Append(rest, path) < 0) goto done;
            continue;
        }
        Item *it = &items[count];
        if (as_key(PyTuple_GET_ITEM(value, 2), it->key) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "an entry's key must be six integers");
            goto done;
        }
        it->fsname = PyUnicode_EncodeFSDefault(path);
        if (it->fsname == NULL) goto done;
        it->path = path;
        it->mode = (uint32_t)mode;
        count++;
    }
    if (threads < 1) threads = 1;
    if (threads > 16) threads = 16;
    /* git's preload_index rule of thumb: a thread is worth it for a few hundred entries. */
    if ((Py_ssize_t)threads > count / 500 + 1) threads = (int)(count / 500 + 1);
    const char *root = PyBytes_AS_STRING(root_obj);
    Py_ssize_t root_len = PyBytes_GET_SIZE(root_obj);
    while (root_len > 0 && root[root_len - 1] == '/') root_len--;
    Chunk chunks[16];
    pthread_t tids[16];
    int started[16] = {0};
    struct stat root_stat;
    char *root_z = PyMem_Malloc((size_t)root_len + 2);
    if (root_z == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(root_z, root, (size_t)root_len);
    root_z[root_len] = '\0';
    int root_ok;
    Py_BEGIN_ALLOW_THREADS;
    root_ok = lstat(root_len ? root_z : "/", &root_stat) == 0 && S_ISDIR(root_stat.st_mode);
    if (root_ok) {
        for (int t = 0; t < threads; t++) {
            chunks[t] = (Chunk){items, count * t / threads, count * (t + 1) / threads, root_z,
                                root_len, index_mtime_ns, filemode};
            started[t] = t > 0 && pthread_create(&tids[t], NULL, scan_chunk, &chunks[t]) == 0;
        }
        for (int t = 0; t < threads; t++)
            if (!started[t]) scan_chunk(&chunks[t]); /* this thread's share, or a failed one */
        for (int t = 1; t < threads; t++)
            if (started[t]) pthread_join(tids[t], NULL);
    }
    Py_END_ALLOW_THREADS;
    PyMem_Free(root_z);
    for (Py_ssize_t i = 0; i < count; i++) {
        Item *it = &items[i];
        int res = root_ok ? it->result : REST;
        if (res == REST) {
            if (PyList_Append(rest, it->path) < 0) goto done;
        } else if (res == TOUCHED) {
            PyObject *pair = Py_BuildValue("(Oy#)", it->path, (const char *)it->packed,
                                           (Py_ssize_t)sizeof it->packed);
            if (pair == NULL || PyList_Append(touched, pair) < 0) {
                Py_XDECREF(pair);
                goto done;
            }
            Py_DECREF(pair);
        }
    }
    result = PyTuple_Pack(2, rest, touched);
done:
    if (items != NULL)
        for (Py_ssize_t i = 0; i < count; i++) Py_XDECREF(items[i].fsname);
    PyMem_Free(items);
    Py_XDECREF(rest);
    Py_XDECREF(touched);
    Py_DECREF(root_obj);
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
        if (has != 0 || PySet_Add(dirs, dir) < 0) {
            Py_DECREF(dir);
            return has < 0 ? -1 : 0;
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

static PyObject *tree_facts(PyObject *self, PyObject *paths) {
    (void)self;
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

PyDoc_STRVAR(with_mode_doc, "with_mode(entries, mode) -> [path, ...] whose entry has mode.");

static PyObject *with_mode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *entries, *path, *value;
    unsigned long wanted;
    if (!PyArg_ParseTuple(args, "O!k", &PyDict_Type, &entries, &wanted)) return NULL;
    PyObject *out = PyList_New(0);
    Py_ssize_t pos = 0;
    if (out == NULL) return NULL;
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
} Walk;

/* Read directory ``fd`` (``dir`` relative to the top, "" for the top; fd is consumed). */
static int walk_dir(Walk *w, int fd, PyObject *dir) {
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return PyList_Append(w->holding, dir); /* the walk proper finds out and says so */
    }
    int rc = -1, holding = 0;
    PyObject *prefix = PyUnicode_GET_LENGTH(dir) ? PyUnicode_FromFormat("%U/", dir)
                                                  : PyUnicode_FromString("");
    if (prefix == NULL) goto done;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) break;
        const char *n = e->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
        if (strcmp(n, ".git") == 0) continue; /* never listed by git */
        PyObject *name = PyUnicode_DecodeFSDefault(n);
        PyObject *path = name ? PyUnicode_Concat(prefix, name) : NULL;
        Py_XDECREF(name);
        if (path == NULL) goto done;
        int tracked = PySequence_Contains(w->tracked, path);
        int is_dir = tracked == 0 ? PySet_Contains(w->tracked_dirs, path) : 0;
        if (tracked < 0 || is_dir < 0) {
            Py_DECREF(path);
            goto done;
        }
        if (is_dir) {
            /* Into real directories only, never through a symlink (O_NOFOLLOW). */
            int sub = -1, failed = 0;
            if (e->d_type == DT_DIR || e->d_type == DT_UNKNOWN) {
                sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                /* Not a directory (or a symlink, or gone): nothing of the clean's below.  Any
                 * other failure (EACCES): let the walk proper list it, and fail as it fails. */
                failed = sub < 0 && errno != ENOENT && errno != ENOTDIR && errno != ELOOP;
            }
            if ((sub >= 0 && walk_dir(w, sub, path) < 0) ||
                (failed && PyList_Append(w->holding, path) < 0)) {
                Py_DECREF(path);
                goto done;
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
    Py_XDECREF(prefix);
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
    Walk w = {tracked, tracked_dirs, PyList_New(0)};
    PyObject *top = PyUnicode_FromString("");
    PyObject *result = NULL;
    if (w.holding == NULL || top == NULL) goto done;
    int fd = open(PyBytes_AS_STRING(root), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        result = Py_NewRef(w.holding);
        goto done;
    }
    if (walk_dir(&w, fd, top) == 0) result = Py_NewRef(w.holding);
done:
    Py_DECREF(root);
    Py_XDECREF(top);
    Py_XDECREF(w.holding);
    return result;
}

static PyMethodDef native_methods[] = {
    {"parse_index", parse_index, METH_O, parse_index_doc},
    {"stat_pass", stat_pass, METH_VARARGS, stat_pass_doc},
    {"tree_facts", tree_facts, METH_O, tree_facts_doc},
    {"with_mode", with_mode, METH_VARARGS, with_mode_doc},
    {"dirs_holding_others", dirs_holding_others, METH_VARARGS, dirs_holding_others_doc},
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
    return PyModule_Create(&native_module);
}
