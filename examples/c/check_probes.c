/* Load circlefit's exported model with the onnxruntime C API, run the probe vectors from probes.json
 * and compare with the outputs recorded there. Exits 0 when every probe is within tolerance, 1 otherwise.
 *
 *   usage: check_probes MODEL.onnx PROBES.json
 *
 * probes.json is read directly with the small JSON reader below (objects, arrays, strings, numbers,
 * literals; just enough for a machine-written file): the probes stay the single source, no converted copy.
 * Rule, as in the export stage: |got - expected| <= rtol * (|expected| + offset), rtol and offset from
 * probes.json's "tolerance".
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("check_probes: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* ---- a minimal JSON reader: a tree of nodes ---- */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jnode {
  jtype type;
  double num;
  char *str;            /* J_STR: the string */
  struct jnode **items; /* J_ARR / J_OBJ: children */
  char **keys;          /* J_OBJ: the members' keys, parallel to items */
  size_t n;
} jnode;

typedef struct {
  const char *start, *p, *end, *file;
} jparser;

static void jfail(jparser *s, const char *what) {
  fail("%s: malformed JSON at byte %ld: %s", s->file, (long)(s->p - s->start), what);
}

static void jspace(jparser *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

static jnode *jnew(jtype t) {
  jnode *n = calloc(1, sizeof *n);
  if (!n) fail("out of memory");
  n->type = t;
  return n;
}

static char *jstring(jparser *s) {
  /* The probes hold ASCII keys and strings; escapes are kept as two characters except \" and \\. */
  size_t cap = 16, len = 0;
  char *out = malloc(cap);
  if (!out) fail("out of memory");
  s->p++; /* opening quote */
  while (s->p < s->end && *s->p != '"') {
    char c = *s->p++;
    if (c == '\\' && s->p < s->end) {
      char e = *s->p++;
      c = (e == '"' || e == '\\' || e == '/') ? e : (e == 'n' ? '\n' : e);
    }
    if (len + 1 >= cap && !(out = realloc(out, cap *= 2))) fail("out of memory");
    out[len++] = c;
  }
  if (s->p >= s->end) jfail(s, "unterminated string");
  s->p++;
  out[len] = '\0';
  return out;
}

static void jpush(jnode *n, jnode *child, char *key) {
  n->items = realloc(n->items, (n->n + 1) * sizeof *n->items);
  if (n->type == J_OBJ) n->keys = realloc(n->keys, (n->n + 1) * sizeof *n->keys);
  if (!n->items || (n->type == J_OBJ && !n->keys)) fail("out of memory");
  n->items[n->n] = child;
  if (n->type == J_OBJ) n->keys[n->n] = key;
  n->n++;
}

static jnode *jvalue(jparser *s, int depth) {
  if (depth > 64) jfail(s, "nested too deeply");
  jspace(s);
  if (s->p >= s->end) jfail(s, "unexpected end");
  char c = *s->p;
  if (c == '{' || c == '[') {
    jnode *n = jnew(c == '{' ? J_OBJ : J_ARR);
    char close = c == '{' ? '}' : ']';
    s->p++;
    jspace(s);
    if (s->p < s->end && *s->p == close) {
      s->p++;
      return n;
    }
    for (;;) {
      char *key = NULL;
      if (n->type == J_OBJ) {
        jspace(s);
        if (s->p >= s->end || *s->p != '"') jfail(s, "expected a key");
        key = jstring(s);
        jspace(s);
        if (s->p >= s->end || *s->p++ != ':') jfail(s, "expected ':'");
      }
      jpush(n, jvalue(s, depth + 1), key);
      jspace(s);
      if (s->p < s->end && *s->p == ',') {
        s->p++;
        continue;
      }
      if (s->p < s->end && *s->p == close) {
        s->p++;
        return n;
      }
      jfail(s, "expected ',' or a closing bracket");
    }
  }
  if (c == '"') {
    jnode *n = jnew(J_STR);
    n->str = jstring(s);
    return n;
  }
  if (!strncmp(s->p, "true", 4) || !strncmp(s->p, "false", 5) || !strncmp(s->p, "null", 4)) {
    jnode *n = jnew(c == 'n' ? J_NULL : J_BOOL);
    n->num = c == 't';
    s->p += c == 'f' ? 5 : 4;
    return n;
  }
  char *stop;
  jnode *n = jnew(J_NUM);
  n->num = strtod(s->p, &stop); /* the file has no NaN/Infinity (JSON allows none) */
  if (stop == s->p) jfail(s, "expected a value");
  s->p = stop;
  return n;
}

static const jnode *jget(const jnode *obj, const char *key, jtype want, const char *file) {
  if (obj->type == J_OBJ)
    for (size_t i = 0; i < obj->n; i++)
      if (!strcmp(obj->keys[i], key)) {
        if (obj->items[i]->type != want) fail("%s: \"%s\" has the wrong type", file, key);
        return obj->items[i];
      }
  fail("%s: no \"%s\"", file, key);
  return NULL;
}

static jnode *jload(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) fail("%s: cannot open", path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)size + 1);
  if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) fail("%s: cannot read", path);
  fclose(f);
  jparser s = {buf, buf, buf + size, path};
  jnode *root = jvalue(&s, 0);
  jspace(&s);
  if (s.p != s.end) jfail(&s, "trailing characters");
  return root; /* buf is kept: the process is short-lived */
}

/* ---- onnxruntime ---- */
static const OrtApi *ort;

static void check(OrtStatus *status, const char *what) {
  if (status) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    fail("%s: %s", what, msg);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL.onnx PROBES.json\n", argv[0]);
    return 2;
  }
  const char *model_path = argv[1], *probes_path = argv[2];

  jnode *probes = jload(probes_path);
  const jnode *inputs = jget(probes, "inputs", J_ARR, probes_path);
  const jnode *expected = jget(probes, "expected", J_ARR, probes_path);
  const jnode *tol = jget(probes, "tolerance", J_OBJ, probes_path);
  double rtol = jget(tol, "rtol", J_NUM, probes_path)->num;
  double offset = jget(tol, "offset", J_NUM, probes_path)->num;
  size_t n = inputs->n;
  if (expected->n != n) fail("%s: %zu inputs but %zu expected values", probes_path, n, expected->n);
  float *xy = malloc((n ? n : 1) * 2 * sizeof *xy);
  if (!xy) fail("out of memory");
  for (size_t i = 0; i < n; i++) {
    const jnode *row = inputs->items[i];
    if (row->type != J_ARR || row->n != 2 || row->items[0]->type != J_NUM || row->items[1]->type != J_NUM)
      fail("%s: inputs[%zu] is not [x, y]", probes_path, i);
    xy[2 * i] = (float)row->items[0]->num; /* the file's floats round-trip float32 exactly */
    xy[2 * i + 1] = (float)row->items[1]->num;
    if (expected->items[i]->type != J_NUM) fail("%s: expected[%zu] is not a number", probes_path, i);
  }

  /* The header's API version (ORT_API_VERSION) may be older than the library: the C API is
   * backward compatible, and GetApi returns NULL if the library is older than the header. */
  ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  if (!ort)
    fail("the onnxruntime library %s is older than this header's API %d", OrtGetApiBase()->GetVersionString(),
         ORT_API_VERSION);
  OrtEnv *env;
  check(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "check_probes", &env), "CreateEnv");
  OrtSessionOptions *opts;
  check(ort->CreateSessionOptions(&opts), "CreateSessionOptions");
  check(ort->SetIntraOpNumThreads(opts, 1), "SetIntraOpNumThreads"); /* as the export's parity check */
  OrtSession *session;
  check(ort->CreateSession(env, model_path, opts, &session), model_path);

  OrtAllocator *alloc;
  check(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocatorWithDefaultOptions");
  size_t n_in, n_out;
  check(ort->SessionGetInputCount(session, &n_in), "SessionGetInputCount");
  check(ort->SessionGetOutputCount(session, &n_out), "SessionGetOutputCount");
  if (n_in != 1 || n_out != 1) fail("%s: %zu inputs and %zu outputs, expected 1 and 1", model_path, n_in, n_out);
  char *in_name, *out_name;
  check(ort->SessionGetInputName(session, 0, alloc, &in_name), "SessionGetInputName");
  check(ort->SessionGetOutputName(session, 0, alloc, &out_name), "SessionGetOutputName");

  OrtMemoryInfo *mem;
  check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "CreateCpuMemoryInfo");
  int64_t shape[2] = {(int64_t)n, 2};
  OrtValue *in_tensor = NULL, *out_tensor = NULL;
  check(ort->CreateTensorWithDataAsOrtValue(mem, xy, n * 2 * sizeof *xy, shape, 2,
                                            ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in_tensor),
        "CreateTensorWithDataAsOrtValue");
  const char *in_names[] = {in_name}, *out_names[] = {out_name};
  check(ort->Run(session, NULL, in_names, (const OrtValue *const *)&in_tensor, 1, out_names, 1, &out_tensor), "Run");

  OrtTensorTypeAndShapeInfo *info;
  check(ort->GetTensorTypeAndShape(out_tensor, &info), "GetTensorTypeAndShape");
  ONNXTensorElementDataType type;
  size_t rank;
  int64_t dims[2] = {0, 0};
  check(ort->GetTensorElementType(info, &type), "GetTensorElementType");
  check(ort->GetDimensionsCount(info, &rank), "GetDimensionsCount");
  if (rank == 2) check(ort->GetDimensions(info, dims, 2), "GetDimensions");
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 2 || dims[0] != (int64_t)n || dims[1] != 1)
    fail("output %s is type %d rank %zu [%lld, %lld], expected float32 [%zu, 1]", out_name, (int)type, rank,
         (long long)dims[0], (long long)dims[1], n);
  float *got;
  check(ort->GetTensorMutableData(out_tensor, (void **)&got), "GetTensorMutableData");

  double worst_ratio = -1.0, max_abs = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < n; i++) {
    double want = expected->items[i]->num, diff = fabs((double)got[i] - want);
    double ratio = isnan(diff) ? INFINITY : diff / (rtol * (fabs(want) + offset));
    if (diff > max_abs) max_abs = diff;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  int ok = n == 0 || worst_ratio <= 1.0;
  if (!ok)
    fprintf(stderr,
            "check_probes: error: probe %zu xy=(%.9g, %.9g): got %.9g, expected %.17g "
            "(|diff| %.3g is %.2fx the tolerance)\n",
            worst, xy[2 * worst], xy[2 * worst + 1], got[worst], expected->items[worst]->num,
            fabs((double)got[worst] - expected->items[worst]->num), worst_ratio);
  else
    printf("ok: %zu probes match (max |diff| %.3g, max diff/tolerance %.4f); onnxruntime %s (C API %d)\n", n,
           max_abs, worst_ratio < 0 ? 0.0 : worst_ratio, OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);

  ort->ReleaseTensorTypeAndShapeInfo(info);
  ort->ReleaseValue(out_tensor);
  ort->ReleaseValue(in_tensor);
  ort->ReleaseMemoryInfo(mem);
  check(ort->AllocatorFree(alloc, in_name), "AllocatorFree");
  check(ort->AllocatorFree(alloc, out_name), "AllocatorFree");
  ort->ReleaseSession(session);
  ort->ReleaseSessionOptions(opts);
  ort->ReleaseEnv(env);
  free(xy);
  return ok ? 0 : 1;
}
