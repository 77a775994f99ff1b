#ifndef ACME_H
#define ACME_H
/* acme: the example C library sharewheel packs. Its ABI series is its major version. */
int acme_series(void);            /* the major version this library was built as */
const char *acme_version(void);   /* the full version string */
int acme_add(int a, int b);
#endif
