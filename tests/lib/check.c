// SPDX-License-Identifier: MIT
#include "check.h"

int check_failures;
int check_passes;

int check_summary(void)
{
	printf("%d passed, %d failed\n", check_passes, check_failures);
	fflush(stdout);
	return check_failures ? 1 : 0;
}
