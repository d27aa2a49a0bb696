/* A pod's worth of glibc lookups: THREADS threads, each calling getaddrinfo
 * (AF_UNSPEC, so A and AAAA) on NAMES in turn until the file STOPFILE exists. The
 * resolv.conf options (e.g. use-vc) come from RES_OPTIONS. Prints one line per failed
 * lookup ("FAIL start-unix-ms took-ms name error") and a last line "ok N failed M".
 * Usage: load STOPFILE THREADS NAME... */
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdlib.h>
#include <unistd.h>

static const char *stopfile;
static char **names;
static int name_count;
static long ok_total, failed_total;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static long now_ms(void) {
    struct timeval now;
    gettimeofday(&now, NULL);
    return now.tv_sec * 1000L + now.tv_usec / 1000;
}

static void *worker(void *arg) {
    long ok = 0, failed = 0;
    for (long i = (long)arg; access(stopfile, F_OK) != 0; i++) {
        const char *name = names[i % name_count];
        struct addrinfo hints, *res;
        long started = now_ms();
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(name, NULL, &hints, &res);
        if (rc == 0) {
            ok++;
            freeaddrinfo(res);
            continue;
        }
        failed++;
        long took = now_ms() - started;
        pthread_mutex_lock(&lock);
        printf("FAIL %ld %ld %s %s\n", started, took, name, gai_strerror(rc));
        fflush(stdout);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    ok_total += ok;
    failed_total += failed;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: load STOPFILE THREADS NAME...\n");
        return 2;
    }
    stopfile = argv[1];
    int threads = atoi(argv[2]);
    names = argv + 3;
    name_count = argc - 3;
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "THREADS must be 1..256\n");
        return 2;
    }
    pthread_t ids[256];
    for (long t = 0; t < threads; t++)
        pthread_create(&ids[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    printf("ok %ld failed %ld\n", ok_total, failed_total);
    return 0;
}
