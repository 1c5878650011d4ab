// `iidm average`: IIDM's model ensemble, the weighted parameter average of checkpoints.
#include "cli/commands.h"
#include "pipeline/ensemble.h"

#include <fmt/format.h>

namespace iidm::cli {

std::function<int()> add_average_command(CLI::App& app, const CommonOptions&) {
  auto* cmd = app.add_subcommand("average",
                                 "Write the (weighted) parameter average of checkpoints of one architecture, "
                                 "as IIDM's ensemble of its 176k- and 266k-step checkpoints (float32 out)");
  auto inputs = std::make_shared<std::vector<std::string>>();
  auto weights = std::make_shared<std::vector<double>>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("inputs", *inputs, "Checkpoints (safetensors), at least two")->required()->check(CLI::ExistingFile);
  cmd->add_option("--weight", *weights, "Weight of each input, in order (default: equal)");
  cmd->add_option("-o,--out", *out, "Output safetensors")->required();
  return [inputs, weights, out]() {
    average_checkpoints(*inputs, *weights, *out);
    fmt::print("wrote {} (average of {} checkpoints)\n", *out, inputs->size());
    return 0;
  };
}

}  // namespace iidm::cli
