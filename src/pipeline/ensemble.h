#pragma once
// IIDM's model ensemble: the (weighted) average of the parameters of several checkpoints of one
// architecture, written as a new float32 checkpoint.
#include <string>
#include <vector>

namespace iidm {

// Writes sum_i w_i * checkpoint_i (weights normalised to sum 1; empty = uniform) to `output`,
// computed in float64 and stored as float32. Key sets, shapes and dtypes must agree; integer
// tensors must be identical across inputs and are copied. Errors name the file and the key.
void average_checkpoints(const std::vector<std::string>& inputs, std::vector<double> weights,
                         const std::string& output);

}  // namespace iidm
