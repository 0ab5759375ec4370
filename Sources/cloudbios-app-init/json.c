/* The JSON app-init reads (the launch disk, control requests) and writes
 * (control answers): RFC 8259 values, strings decoded to UTF-8. */
#define _GNU_SOURCE
#include "appinit.h"

#include <stdlib.h>
#include <string.h>

struct parser {
    const char *p, *end;
    int depth;
};

static void skip_space(struct parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int literal(struct parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return 0;
    ps->p += n;
    return 1;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static void put_utf8(struct cb_buf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xc0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) { u[0] = (char)(0xe0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
    else { u[0] = (char)(0xf0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (char)(0x80 | (cp & 0x3f)); n = 4; }
    cb_buf_add(b, u, n);
}

/* A string after its opening quote, into `b` (allocated and NUL-terminated,
 * also when empty). 0 when malformed. */
static int string_body(struct parser *ps, struct cb_buf *b) {
    while (ps->p < ps->end) {
        unsigned char c = (unsigned char)*ps->p++;
        if (c == '"') { cb_buf_add(b, "", 1); b->len--; return 1; }
        if (c < 0x20) return 0;
        if (c != '\\') { cb_buf_add(b, (const char *)&c, 1); continue; }
        if (ps->p >= ps->end) return 0;
        char e = *ps->p++;
        switch (e) {
        case '"': cb_buf_add(b, "\"", 1); break;
        case '\\': cb_buf_add(b, "\\", 1); break;
        case '/': cb_buf_add(b, "/", 1); break;
        case 'b': cb_buf_add(b, "\b", 1); break;
        case 'f': cb_buf_add(b, "\f", 1); break;
        case 'n': cb_buf_add(b, "\n", 1); break;
        case 'r': cb_buf_add(b, "\r", 1); break;
        case 't': cb_buf_add(b, "\t", 1); break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 4 || !hex4(ps->p, &cp)) return 0;
            ps->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !hex4(ps->p + 2, &lo) || lo < 0xdc00 || lo >= 0xe000)
                    return 0;
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return 0;
            }
            if (cp == 0) return 0; /* a NUL cannot reach argv, env or a path */
            put_utf8(b, cp);
            break;
        }
        default: return 0;
        }
    }
    return 0;
}

static int value(struct parser *ps, struct cb_json *v);

static int grow(struct cb_json *v, size_t *cap, int with_keys) {
    if (v->count < *cap) return 1;
    size_t n = *cap ? *cap * 2 : 4;
    struct cb_json *items = realloc(v->items, n * sizeof *items);
    if (!items) return 0;
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, n * sizeof *keys);
        if (!keys) return 0;
        v->keys = keys;
    }
    *cap = n;
    return 1;
}

static int value(struct parser *ps, struct cb_json *v) {
    memset(v, 0, sizeof *v);
    skip_space(ps);
    if (ps->p >= ps->end) return 0;
    char c = *ps->p;
    if (c == 'n') return literal(ps, "null");
    if (c == 't') { v->kind = CB_JSON_BOOL; v->boolean = 1; return literal(ps, "true"); }
    if (c == 'f') { v->kind = CB_JSON_BOOL; return literal(ps, "false"); }
    if (c == '"') {
        ps->p++;
        struct cb_buf b = {0};
        v->kind = CB_JSON_STRING;
        if (!string_body(ps, &b)) { free(b.data); return 0; }
        v->string = b.data;
        v->length = b.len;
        return 1;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *s = ps->p;
        if (*ps->p == '-') ps->p++;
        if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) return 0;
        while (ps->p < ps->end && ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' || *ps->p == 'e' || *ps->p == 'E' ||
                                   *ps->p == '+' || *ps->p == '-'))
            ps->p++;
        char tmp[64];
        size_t n = (size_t)(ps->p - s);
        if (n >= sizeof tmp) return 0;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        char *rest;
        v->kind = CB_JSON_NUMBER;
        v->number = strtod(tmp, &rest);
        return *rest == 0;
    }
    if (c != '[' && c != '{') return 0;
    if (++ps->depth > 64) return 0;
    int object = c == '{';
    v->kind = object ? CB_JSON_OBJECT : CB_JSON_ARRAY;
    ps->p++;
    size_t cap = 0;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == (object ? '}' : ']')) { ps->p++; ps->depth--; return 1; }
    for (;;) {
        if (!grow(v, &cap, object)) return 0;
        if (object) {
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != '"') return 0;
            ps->p++;
            struct cb_buf k = {0};
            if (!string_body(ps, &k)) { free(k.data); return 0; }
            for (size_t i = 0; i < v->count; i++)
                if (strcmp(v->keys[i], k.data) == 0) { free(k.data); return 0; } /* duplicate keys are refused */
            v->keys[v->count] = k.data;
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != ':') { v->items[v->count++] = (struct cb_json){0}; return 0; }
            ps->p++;
        }
        int ok = value(ps, &v->items[v->count]);
        v->count++;
        if (!ok) return 0;
        skip_space(ps);
        if (ps->p >= ps->end) return 0;
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == (object ? '}' : ']')) { ps->p++; ps->depth--; return 1; }
        return 0;
    }
}

static void release(struct cb_json *v) {
    free(v->string);
    for (size_t i = 0; i < v->count; i++) {
        release(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

struct cb_json *cb_json_parse(const char *text, size_t len) {
    struct parser ps = {text, text + len, 0};
    struct cb_json *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    int ok = value(&ps, v);
    skip_space(&ps);
    if (!ok || ps.p != ps.end) { release(v); free(v); return NULL; }
    return v;
}

void cb_json_free(struct cb_json *v) {
    if (!v) return;
    release(v);
    free(v);
}

const struct cb_json *cb_json_get(const struct cb_json *v, const char *key) {
    if (!v || v->kind != CB_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}

void cb_buf_add(struct cb_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) abort();
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void cb_buf_str(struct cb_buf *b, const char *s) { cb_buf_add(b, s, strlen(s)); }

/* The length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_length(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    return len;
}

void cb_buf_json_string(struct cb_buf *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    cb_buf_add(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"') { cb_buf_add(b, "\\\"", 2); i++; }
        else if (c == '\\') { cb_buf_add(b, "\\\\", 2); i++; }
        else if (c == '\n') { cb_buf_add(b, "\\n", 2); i++; }
        else if (c == '\r') { cb_buf_add(b, "\\r", 2); i++; }
        else if (c == '\t') { cb_buf_add(b, "\\t", 2); i++; }
        else if (c < 0x20 || c == 0x7f) {
            char u[8];
            static const char hex[] = "0123456789abcdef";
            memcpy(u, "\\u00", 4);
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            cb_buf_add(b, u, 6);
            i++;
        } else {
            size_t len = utf8_length(s + i, n - i);
            if (len == 0) { cb_buf_add(b, "\xef\xbf\xbd", 3); i++; }
            else { cb_buf_add(b, (const char *)s + i, len); i += len; }
        }
    }
    cb_buf_add(b, "\"", 1);
}
