/* The C test programs' check: a failed condition prints its line, a
 * message and edgespec_last_error(), and counts in `failures`; a program
 * prints "ALL OK" at its end when `failures` is 0. */
#ifndef EDGESPEC_TEST_CHECK_H
#define EDGESPEC_TEST_CHECK_H

#include <stdio.h>
#include "edgespec.h"

static int failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            failures++;                                   \
            printf("FAIL line %d: ", __LINE__);           \
            printf(__VA_ARGS__);                          \
            printf(" (%s)\n", edgespec_last_error());     \
        }                                                 \
    } while (0)

#endif
