// Package models ships infergate's sample models (iris, digits, textclass)
// inside the binary, so that `infergate serve` with no config serves them on
// any machine. The files are made by make_models.py (make models) and
// committed; see README.md beside this file.
package models

import "embed"

// FS holds the sample model repository: <model>/config.json,
// <model>/1/model.onnx, and each model's request.json and reference.json.
//
//go:embed iris digits textclass
var FS embed.FS

// Names lists the sample models.
var Names = []string{"iris", "digits", "textclass"}
