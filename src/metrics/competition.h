#pragma once
// The competition's score, mask_acc × (0.2·aesthetic + 0.3·(0.5·style + 0.5) + 0.5·(100 − FID)/100),
// term by term. The aesthetic term needs the organisers' aesthetic predictor, which is not
// available here: it is left out (its 0.2 weight is simply missing), so the best reachable score
// is 0.8 × mask accuracy, and `aesthetic_omitted` says so wherever the score is shown.
namespace iidm {

struct CompetitionScore {
  double mask_accuracy = 0, style = 0, fid = 0;
  double style_term = 0;  // 0.3 · (0.5 · style + 0.5); style is a correlation in [-1, 1]
  double fid_term = 0;    // 0.5 · (100 − FID) / 100
  double score = 0;       // mask_accuracy × (style_term + fid_term)
  bool aesthetic_omitted = true;
};

CompetitionScore competition_score(double mask_accuracy, double style, double fid);

}  // namespace iidm
