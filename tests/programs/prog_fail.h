/* FAIL for gpuwire's test programs (check.h, driver_check.h): "FAIL <name>: why" and exit 1. */
#ifndef GW_PROGRAMS_PROG_FAIL_H
#define GW_PROGRAMS_PROG_FAIL_H

#include <stdio.h>
#include <stdlib.h>

#ifndef PROG
#error "define PROG (the program's name) before including check.h or driver_check.h"
#endif

#define FAIL(...)                                  \
    do {                                           \
        printf("FAIL %s: ", PROG);                 \
        printf(__VA_ARGS__);                       \
        printf("\n");                              \
        fflush(stdout);                            \
        exit(1);                                   \
    } while (0)

#endif
