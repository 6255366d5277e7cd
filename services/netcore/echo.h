/*
 * A diagnostic echo service inside the core: TCP and UDP echo on one port,
 * IPv4 and IPv6. Off by default; it exists so the stack can be tested end
 * to end before clients can attach.
 */
#ifndef NETCORE_ECHO_H
#define NETCORE_ECHO_H

#include <stdint.h>

struct nc_echo;

/* Listens on `port`. Returns NULL if lwIP refused (logged). */
struct nc_echo *nc_echo_start(uint16_t port);
void nc_echo_stop(struct nc_echo *e);

#endif /* NETCORE_ECHO_H */
