/*
 * notify.h — systemd's service notifications for `Type=notify` units
 * (sd_notify from libsystemd).  Built without libsystemd (make SYSTEMD=0, or
 * no libsystemd-dev), every call does nothing.
 */
#ifndef PGLEASE_NOTIFY_H
#define PGLEASE_NOTIFY_H

#include <stdbool.h>

/* Sends "NAME=value\n..." to $NOTIFY_SOCKET, when there is one. */
void pgl_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when this build can notify systemd. */
bool pgl_notify_built(void);

#endif
