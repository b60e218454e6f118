/* Compiled and run by buildfleet's sample on every platform's own node. It prints the
 * CPU the compiler targeted, which the check compares with the platform requested and
 * with the ELF header of this very binary. */
#include <stdio.h>

int main(void)
{
#if defined(__x86_64__)
    const char *target = "amd64";
#elif defined(__i386__)
    const char *target = "386";
#elif defined(__aarch64__)
    const char *target = "arm64";
#elif defined(__arm__)
    static char target[16];
    snprintf(target, sizeof target, "arm/v%d", __ARM_ARCH);
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
    const char *target = "ppc64le";
#elif defined(__s390x__)
    const char *target = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
    const char *target = "riscv64";
#else
    const char *target = "unknown";
#endif
    printf("%s %zu-bit\n", target, sizeof(void *) * 8);
    return 0;
}
