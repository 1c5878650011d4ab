#include "metrics/competition.h"

namespace iidm {

CompetitionScore competition_score(double mask_accuracy, double style, double fid) {
  CompetitionScore s;
  s.mask_accuracy = mask_accuracy, s.style = style, s.fid = fid;
  s.style_term = 0.3 * (0.5 * style + 0.5);
  s.fid_term = 0.5 * (100.0 - fid) / 100.0;
  s.score = mask_accuracy * (s.style_term + s.fid_term);
  return s;
}

}  // namespace iidm
