/*
 * notify.c — systemd's service notifications (see notify.h): READY=1 once
 * the agent runs its loop, STATUS= on each role change, RELOADING=1 and
 * READY=1 around a reload, STOPPING=1 at a clean stop.
 */
#include <stdarg.h>
#include <stdio.h>

#include "pglease/notify.h"

#ifdef PGL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

void
pgl_notify(const char *fmt, ...)
{
#ifdef PGL_HAVE_SYSTEMD
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* No socket (not under systemd): sd_notify returns 0 and does nothing. */
	sd_notify(0, msg);
#else
	(void) fmt;
#endif
}

bool
pgl_notify_built(void)
{
#ifdef PGL_HAVE_SYSTEMD
	return true;
#else
	return false;
#endif
}
