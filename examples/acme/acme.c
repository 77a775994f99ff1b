#include "acme.h"

int acme_series(void) { return ACME_MAJOR; }
const char *acme_version(void) { return ACME_VERSION; }
int acme_add(int a, int b) { return a + b; }
