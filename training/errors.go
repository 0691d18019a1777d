package training

import (
	"errors"
	"fmt"
)

// Errors Train, Evaluate and NewMLP wrap, for a caller (the pipeline's
// built-in steps) to tell bad input, which a retry cannot fix, from a
// fault. A missing file is an fs.ErrNotExist wrapped as it comes.
var (
	// ErrInvalidOptions: an option is out of range; the message names
	// the field and the value.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrInvalidData: the CSV cannot be read as a labelled data set for
	// the model; the message names the file, the line and the column.
	ErrInvalidData = errors.New("invalid data")
	// ErrInvalidModel: the ONNX file is not a classifier this package
	// can train or evaluate; the message names the file and the cause.
	ErrInvalidModel = errors.New("invalid model")
	// ErrNoTrainableWeights: the model has no floating-point
	// initializers, so there is nothing to train. It wraps
	// ErrInvalidModel.
	ErrNoTrainableWeights = fmt.Errorf("no trainable (floating-point) initializers: %w", ErrInvalidModel)
	// ErrDiverged: the training loss became NaN or infinite, usually
	// from too high a learning rate.
	ErrDiverged = errors.New("training diverged")
)
