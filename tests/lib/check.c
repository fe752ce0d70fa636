// SPDX-License-Identifier: MIT
#include "check.h"

atomic_int check_failures;
atomic_int check_passes;

int check_summary(void)
{
	printf("%d passed, %d failed\n", atomic_load(&check_passes), atomic_load(&check_failures));
	fflush(stdout);
	return check_failures ? 1 : 0;
}
