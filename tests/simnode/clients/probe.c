/* A pod's C resolver, built by the simnode tests with the system's libc (glibc) and
 * with musl-gcc -static (musl). Each argument is one lookup, `KIND:NAME`:
 *   a:NAME, aaaa:NAME  getaddrinfo with AF_INET / AF_INET6 (SOCK_STREAM): one line
 *                      "A addr" / "AAAA addr" per address, or "NODATA" (EAI_NODATA),
 *                      "NONE" (EAI_NONAME: no such name, or no such address for a
 *                      libc that does not tell them apart), or "ERR text".
 *   srv:NAME, txt:NAME res_search: "MSG hex" of the whole answer (the test decodes it),
 *                      or "NXDOMAIN", "NODATA", "ERR h_errno".
 * Every lookup's lines are prefixed by its index and a tab. */
#define _GNU_SOURCE /* EAI_NODATA */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void addresses(int i, const char *name, int family) {
    struct addrinfo hints, *res, *p;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc == EAI_NONAME) {
        printf("%d\tNONE\n", i);
        return;
    }
    if (rc == EAI_NODATA) {
        printf("%d\tNODATA\n", i);
        return;
    }
    if (rc != 0) {
        printf("%d\tERR %s\n", i, gai_strerror(rc));
        return;
    }
    for (p = res; p; p = p->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *addr = p->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
        inet_ntop(p->ai_family, addr, text, sizeof text);
        printf("%d\t%s %s\n", i, p->ai_family == AF_INET ? "A" : "AAAA", text);
    }
    freeaddrinfo(res);
}

static void query(int i, const char *name, int type) {
    static unsigned char answer[65535];
    int n = res_search(name, C_IN, type, answer, sizeof answer);
    if (n < 0) {
        if (h_errno == HOST_NOT_FOUND)
            printf("%d\tNXDOMAIN\n", i);
        else if (h_errno == NO_DATA)
            printf("%d\tNODATA\n", i);
        else
            printf("%d\tERR h_errno %d\n", i, h_errno);
        return;
    }
    printf("%d\tMSG ", i);
    for (int k = 0; k < n; k++)
        printf("%02x", answer[k]);
    printf("\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *name = strchr(arg, ':');
        if (!name) {
            printf("%d\tERR bad argument\n", i - 1);
            continue;
        }
        name++;
        if (!strncmp(arg, "a:", 2))
            addresses(i - 1, name, AF_INET);
        else if (!strncmp(arg, "aaaa:", 5))
            addresses(i - 1, name, AF_INET6);
        else if (!strncmp(arg, "srv:", 4))
            query(i - 1, name, 33);
        else if (!strncmp(arg, "txt:", 4))
            query(i - 1, name, 16);
        else
            printf("%d\tERR bad argument\n", i - 1);
        fflush(stdout);
    }
    return 0;
}
