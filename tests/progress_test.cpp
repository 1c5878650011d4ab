#include <gtest/gtest.h>

#include "core/progress.h"

using iidm::ProgressBar;

// A run resumed at 1000/3000 that took 1 s for its first step has 1999 s left, not 2 s:
// only the work of this run tells its speed.
TEST(Progress, EtaOfAResumedRunCountsOnlyItsOwnWork) {
  EXPECT_DOUBLE_EQ(ProgressBar::eta_seconds(1000, 1001, 3000, 1.0), 1999.0);
  EXPECT_DOUBLE_EQ(ProgressBar::eta_seconds(0, 10, 40, 5.0), 15.0);
  EXPECT_LT(ProgressBar::eta_seconds(1000, 1000, 3000, 1.0), 0);  // nothing done yet: unknown
  EXPECT_LT(ProgressBar::eta_seconds(0, 5, 10, 0.0), 0);
  EXPECT_DOUBLE_EQ(ProgressBar::eta_seconds(0, 10, 10, 3.0), 0.0);
}

TEST(Progress, DurationsReadAsHoursMinutesSeconds) {
  EXPECT_EQ(ProgressBar::format_duration(12.2), "12s");
  EXPECT_EQ(ProgressBar::format_duration(185), "3m05s");
  EXPECT_EQ(ProgressBar::format_duration(3720), "1h02m");
  EXPECT_EQ(ProgressBar::format_duration(-1), "?");
}
