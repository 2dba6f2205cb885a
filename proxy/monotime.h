#ifndef MW_MONOTIME_H
#define MW_MONOTIME_H

/* monotime_ms - milliseconds on CLOCK_MONOTONIC: for deadlines and
 * durations, which a step of the wall clock must not stretch or cut */
long long monotime_ms(void);

#endif
