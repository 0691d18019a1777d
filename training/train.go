package training

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train/losses"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers/cosineschedule"
	"google.golang.org/protobuf/proto"
)

// Train defaults, used for the zero values of TrainOptions' fields.
const (
	DefaultLoss            = "cross_entropy"
	DefaultOptimizer       = "adam"
	DefaultAdamRate        = 0.01
	DefaultSGDRate         = 0.1
	DefaultSchedule        = "cosine"
	DefaultEpochs          = 100
	DefaultBatchSize       = 32
	DefaultValidationSplit = 0.2
)

// Bounds on TrainOptions, so that a typo fails fast instead of running for
// days.
const (
	maxEpochs    = 100000
	maxBatchSize = 1 << 16
)

// trainStream is the PCG stream Train draws from (the split, then every
// epoch's shuffle); see mlpStream.
const trainStream = 0x747261696e // "train"

// probEpsilon is added to a probability before its log, for a model whose
// output is probabilities Train cannot trace back to logits: it caps the
// loss of a wrong, certain prediction at -log(1e-7) ≈ 16.
const probEpsilon = 1e-7

// TrainOptions configure Train. Every zero value is a documented default,
// except for Model, Data and Out, which are required.
type TrainOptions struct {
	// Model is the ONNX model to train (its initial weights): a classifier
	// with one data input [batch, ...] and a first output of class scores
	// [batch, classes], probabilities or logits. Its floating-point
	// initializers are the weights trained.
	Model string
	// Data is the CSV file to train on: numeric columns, one of them the
	// label (a class number from 0), the others the features, which fill
	// the model's input row by row. A first line that is not all numbers
	// is a header.
	Data string
	// LabelColumn names the label column: a header's column name or a
	// zero-based index (negative counts from the end). Empty means the
	// last column.
	LabelColumn string
	// Loss is the loss minimized; "cross_entropy" (the default) is the
	// only one. It is computed on the logits when the model ends in a
	// Softmax over the classes (the Softmax's input), and on the log of
	// the output, plus 1e-7, when its output is probabilities that Train
	// cannot trace back to logits.
	Loss string
	// Optimizer is "adam" (the default) or "sgd" (plain stochastic
	// gradient descent at a constant rate).
	Optimizer string
	// LearningRate is the optimizer's step size; 0 means DefaultAdamRate
	// for Adam and DefaultSGDRate for SGD.
	LearningRate float64
	// Schedule is how the learning rate changes over the run: "cosine"
	// (the default) decays it from LearningRate to 0 along half a cosine
	// over all the steps, so the last epochs take small steps and the
	// final weights do not land on a bad one; "constant" keeps it.
	Schedule string
	// Epochs is the number of passes over the training rows; 0 means
	// DefaultEpochs.
	Epochs int
	// BatchSize is the number of rows per optimizer step; 0 means
	// DefaultBatchSize. The last batch of an epoch holds the rows left
	// over.
	BatchSize int
	// ValidationSplit is the fraction of the rows of each class held out
	// to measure validation accuracy after every epoch, in (0, 1); 0
	// means DefaultValidationSplit, and a negative value holds out
	// nothing.
	ValidationSplit float64
	// Seed seeds the split and the shuffles: the same options, model and
	// data train the same weights, byte for byte. Every value, 0
	// included, is a seed. The initial weights are the model's own (see
	// NewMLP's seed).
	Seed uint64
	// Out is where the trained ONNX model is written: the input model with
	// its initializers replaced, the same inputs, outputs and graph. It is
	// written only when training completes, atomically (a temporary file
	// renamed). Its directory is created if missing.
	Out string
	// Progress, if set, is called after every epoch with the epoch's
	// number (from 1), its mean training loss and the validation accuracy
	// (0 without a validation split), on Train's goroutine. To stop
	// early, cancel Train's context.
	Progress func(epoch int, loss, valAcc float64)
}

// Metrics describe a training run, for metrics.json.
type Metrics struct {
	// Epochs is the number of epochs completed.
	Epochs int `json:"epochs"`
	// LossCurve is the mean training loss of each epoch.
	LossCurve []float64 `json:"loss_curve"`
	// ValidationAccuracyCurve is the validation accuracy after each
	// epoch; empty without a validation split.
	ValidationAccuracyCurve []float64 `json:"validation_accuracy_curve,omitempty"`
	// Loss is the last epoch's mean training loss.
	Loss float64 `json:"loss"`
	// TrainAccuracy is the accuracy on the training rows with the final
	// weights.
	TrainAccuracy float64 `json:"train_accuracy"`
	// ValidationAccuracy and ValidationLoss are measured on the rows held
	// out, with the final weights; 0 without a validation split.
	ValidationAccuracy float64 `json:"validation_accuracy"`
	ValidationLoss     float64 `json:"validation_loss"`
	TrainRows          int     `json:"train_rows"`
	ValidationRows     int     `json:"validation_rows"`
	Classes            int     `json:"classes"`
	// The options as applied, defaults resolved.
	Optimizer    string  `json:"optimizer"`
	LearningRate float64 `json:"learning_rate"`
	Schedule     string  `json:"schedule"`
	BatchSize    int     `json:"batch_size"`
	Seed         uint64  `json:"seed"`
	// TrainSeconds is the wall time of the whole call; EpochSeconds the
	// mean wall time of an epoch (training steps and validation).
	TrainSeconds float64 `json:"train_seconds"`
	EpochSeconds float64 `json:"epoch_seconds"`
}

// Train trains the model at opts.Model on the CSV at opts.Data with GoMLX
// (autodiff and the chosen optimizer, on its pure-Go backend), writes the
// trained model to opts.Out and returns the run's metrics. Given the same
// options, model and data it trains the same weights, byte for byte.
//
// Errors name what is wrong and wrap ErrInvalidOptions, ErrInvalidData,
// ErrInvalidModel (ErrNoTrainableWeights) or ErrDiverged; a missing file
// wraps fs.ErrNotExist. When ctx is done between two steps, Train returns
// the metrics of the epochs completed with an error wrapping ctx.Err(),
// and writes no model.
func Train(ctx context.Context, opts TrainOptions) (Metrics, error) {
	backend, err := newBackend()
	if err != nil {
		return Metrics{}, err
	}
	defer backend.Finalize()
	_, m, err := train(ctx, opts, backend)
	return m, err
}

// train is Train on the given backend. It returns the trainer, whose
// context holds the trained weights, for tests to look into.
func train(ctx context.Context, opts TrainOptions, backend backends.Backend) (*trainer, Metrics, error) {
	start := time.Now()
	t, err := prepare(&opts, backend)
	if err != nil {
		return nil, Metrics{}, err
	}
	m, err := t.run(ctx, opts, start)
	if err != nil {
		return t, m, err
	}
	if err := t.save(opts.Out); err != nil {
		return t, m, err
	}
	m.TrainSeconds = time.Since(start).Seconds()
	return t, m, nil
}

// prepare checks and completes opts, loads the model and the data, and
// returns a trainer ready for its first epoch.
func prepare(opts *TrainOptions, backend backends.Backend) (*trainer, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	c, err := loadClassifier(opts.Model)
	if err != nil {
		return nil, err
	}
	d, err := readCSV(opts.Data, opts.LabelColumn)
	if err != nil {
		return nil, err
	}
	if err := c.resolveInput(d.features); err != nil {
		return nil, err
	}
	return newTrainer(c, d, backend, *opts)
}

func (o *TrainOptions) normalize() error {
	bad := func(field string, v any, why string) error {
		return fmt.Errorf("training: TrainOptions.%s: %v %s: %w", field, v, why, ErrInvalidOptions)
	}
	switch {
	case o.Model == "":
		return bad("Model", `""`, "is empty: the ONNX model to train is required")
	case o.Data == "":
		return bad("Data", `""`, "is empty: the CSV to train on is required")
	case o.Out == "":
		return bad("Out", `""`, "is empty: the path to write the trained model to is required")
	}
	if o.Loss == "" {
		o.Loss = DefaultLoss
	}
	if o.Loss != "cross_entropy" {
		return bad("Loss", fmt.Sprintf("%q", o.Loss), `is not a loss Train knows: use "cross_entropy"`)
	}
	if o.Optimizer == "" {
		o.Optimizer = DefaultOptimizer
	}
	rate := 0.0
	switch o.Optimizer {
	case "adam":
		rate = DefaultAdamRate
	case "sgd":
		rate = DefaultSGDRate
	default:
		return bad("Optimizer", fmt.Sprintf("%q", o.Optimizer), `is not an optimizer Train knows: use "adam" or "sgd"`)
	}
	if o.Schedule == "" {
		o.Schedule = DefaultSchedule
	}
	if o.Schedule != "cosine" && o.Schedule != "constant" {
		return bad("Schedule", fmt.Sprintf("%q", o.Schedule), `is not a schedule Train knows: use "cosine" or "constant"`)
	}
	if o.LearningRate == 0 {
		o.LearningRate = rate
	}
	if !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0) {
		return bad("LearningRate", o.LearningRate, "is not a positive number")
	}
	if o.Epochs == 0 {
		o.Epochs = DefaultEpochs
	}
	if o.Epochs < 0 || o.Epochs > maxEpochs {
		return bad("Epochs", o.Epochs, fmt.Sprintf("is out of range: 1 to %d", maxEpochs))
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchSize < 0 || o.BatchSize > maxBatchSize {
		return bad("BatchSize", o.BatchSize, fmt.Sprintf("is out of range: 1 to %d", maxBatchSize))
	}
	if o.ValidationSplit == 0 {
		o.ValidationSplit = DefaultValidationSplit
	}
	if math.IsNaN(o.ValidationSplit) || o.ValidationSplit >= 1 {
		return bad("ValidationSplit", o.ValidationSplit, "is out of range: a fraction below 1, or negative for none")
	}
	if o.ValidationSplit < 0 {
		o.ValidationSplit = 0
	}
	return nil
}

// newBackend returns a SimpleGo backend for one training run. It runs the
// ops of a step one after another ("ops_sequential"): on models this small
// that is faster (an epoch of digits took 36 ms rather than 52 ms on 2
// cores) than running independent ops on goroutines. Its matrix products
// may still split across goroutines, but by blocks of the output, never
// along the summed axis, so the results do not depend on the cores.
func newBackend() (backends.Backend, error) {
	b, err := simplego.New("ops_sequential")
	if err != nil {
		return nil, fmt.Errorf("training: backend: %w", err)
	}
	return b, nil
}

// trainer holds one training run's state.
type trainer struct {
	c       *classifier
	d       *dataset
	backend backends.Backend
	rng     *rand.Rand

	trainRows, valRows []int
	step               *mlctx.Exec  // (x, y) -> loss, updating the weights
	compiled           map[int]bool // batch sizes step has run
	eval               *mlctx.Exec  // (x, y) -> (predicted class, mean loss)

	// Reused batch buffers; input holds the features in the model's
	// input dtype.
	input  any
	labels []int32
}

func newTrainer(c *classifier, d *dataset, backend backends.Backend, opts TrainOptions) (*trainer, error) {
	switch c.inputDType {
	case dtypes.Int32:
		if err := d.checkIntegral(32); err != nil {
			return nil, err
		}
	case dtypes.Int64:
		if err := d.checkIntegral(64); err != nil {
			return nil, err
		}
	}
	if err := c.probe(backend); err != nil {
		return nil, err
	}
	if err := d.checkLabels(c.classes, c.path); err != nil {
		return nil, err
	}
	t := &trainer{c: c, d: d, backend: backend, rng: rand.New(rand.NewPCG(opts.Seed, trainStream)), compiled: map[int]bool{}}
	t.trainRows, t.valRows = d.split(opts.ValidationSplit, c.classes, t.rng)
	if len(t.trainRows) == 0 {
		return nil, fmt.Errorf("training: data %s: %d rows leave none to train on after a validation split of %g: %w",
			d.path, d.rows(), opts.ValidationSplit, ErrInvalidData)
	}

	var opt optimizers.Interface
	switch opts.Optimizer {
	case "adam":
		opt = optimizers.Adam().LearningRate(opts.LearningRate).Done()
	case "sgd":
		opt = optimizers.StochasticGradientDescent().WithLearningRate(opts.LearningRate).WithDecay(false).Done()
	}
	// Unchecked: graphs built later (another batch size) find the
	// optimizer's variables already there.
	vars := c.ctx.Checked(false)
	var err error
	steps := opts.Epochs * ((len(t.trainRows) + opts.BatchSize - 1) / opts.BatchSize)
	t.step, err = mlctx.NewExec(backend, vars, func(ctx *mlctx.Context, x, y *graph.Node) *graph.Node {
		ctx.SetTraining(x.Graph(), true)
		loss := t.loss(c.forward(ctx, x), y)
		if opts.Schedule == "cosine" {
			cosineschedule.New(ctx, x.Graph(), loss.DType()).LearningRate(opts.LearningRate).PeriodSteps(steps).Done()
		}
		opt.UpdateGraph(ctx, x.Graph(), loss)
		return loss
	})
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	t.eval, err = mlctx.NewExec(backend, vars, func(ctx *mlctx.Context, x, y *graph.Node) []*graph.Node {
		ctx.SetTraining(x.Graph(), false)
		scores := c.forward(ctx, x)
		return []*graph.Node{graph.ArgMax(scores, -1, dtypes.Int32), t.loss(scores, y)}
	})
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	return t, nil
}

// loss is the mean cross-entropy of scores ([n, classes]) against labels
// ([n, 1], int32), as TrainOptions.Loss describes.
func (t *trainer) loss(scores, labels *graph.Node) *graph.Node {
	if !t.c.probs {
		return graph.ReduceAllMean(losses.SparseCategoricalCrossEntropyLogits([]*graph.Node{labels}, []*graph.Node{scores}))
	}
	onehot := graph.OneHot(graph.Reshape(labels, -1), t.c.classes, scores.DType())
	p := graph.ReduceSum(graph.Mul(scores, onehot), -1)
	return graph.Neg(graph.ReduceAllMean(graph.Log(graph.AddScalar(p, probEpsilon))))
}

// run trains for opts.Epochs and measures the result.
func (t *trainer) run(ctx context.Context, opts TrainOptions, start time.Time) (m Metrics, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("training: model %s: %v", t.c.path, errorFromPanic(r))
		}
	}()
	m = Metrics{
		TrainRows:      len(t.trainRows),
		ValidationRows: len(t.valRows),
		Classes:        t.c.classes,
		Optimizer:      opts.Optimizer,
		LearningRate:   opts.LearningRate,
		Schedule:       opts.Schedule,
		BatchSize:      opts.BatchSize,
		Seed:           opts.Seed,
	}
	epochsStart := time.Now()
	for epoch := 1; epoch <= opts.Epochs; epoch++ {
		loss, err := t.epoch(ctx, opts.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				m.TrainSeconds = time.Since(start).Seconds()
				err = fmt.Errorf("training: stopped after %d of %d epochs: %w", m.Epochs, opts.Epochs, err)
			}
			return m, err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return m, fmt.Errorf("training: loss is %v at epoch %d (learning rate %g): %w", loss, epoch, opts.LearningRate, ErrDiverged)
		}
		valAcc := 0.0
		if len(t.valRows) > 0 {
			if valAcc, _, err = t.measure(t.valRows); err != nil {
				return m, err
			}
			m.ValidationAccuracyCurve = append(m.ValidationAccuracyCurve, valAcc)
		}
		m.LossCurve = append(m.LossCurve, loss)
		m.Epochs, m.Loss = epoch, loss
		if opts.Progress != nil {
			opts.Progress(epoch, loss, valAcc)
		}
	}
	m.EpochSeconds = time.Since(epochsStart).Seconds() / float64(m.Epochs)
	if m.TrainAccuracy, _, err = t.measure(t.trainRows); err != nil {
		return m, err
	}
	if len(t.valRows) > 0 {
		if m.ValidationAccuracy, m.ValidationLoss, err = t.measure(t.valRows); err != nil {
			return m, err
		}
	}
	return m, nil
}

// epoch shuffles the training rows and takes one optimizer step per batch
// of them; it returns the mean loss of the batches, weighted by their
// rows. It stops with ctx's error, unwrapped, when ctx is done.
func (t *trainer) epoch(ctx context.Context, batchSize int) (float64, error) {
	rows := t.trainRows
	t.rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	sum := 0.0
	for lo := 0; lo < len(rows); lo += batchSize {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		batch := rows[lo:min(lo+batchSize, len(rows))]
		loss, err := t.trainStep(batch)
		if err != nil {
			return 0, err
		}
		sum += loss * float64(len(batch))
	}
	return sum / float64(len(rows)), nil
}

// trainStep runs one optimizer step on rows and returns the batch's loss.
func (t *trainer) trainStep(rows []int) (float64, error) {
	x, y := t.batch(rows)
	defer x.FinalizeAll()
	defer y.FinalizeAll()
	out, err := t.step.Exec(x, y)
	if err != nil {
		if !t.compiled[len(rows)] {
			// The step's graph is built and compiled on the first batch of
			// each size: a model the backend cannot differentiate or run
			// (SimpleGo lacks MaxPool's gradient, for one) fails there.
			return 0, fmt.Errorf("training: model %s: cannot train it: %w (%w)", t.c.path, err, ErrInvalidModel)
		}
		return 0, fmt.Errorf("training: step: %w", err)
	}
	t.compiled[len(rows)] = true
	defer finalize(out)
	return scalar(out[0]), nil
}

// measure returns the accuracy and mean loss of the current weights on
// rows, in one batch.
func (t *trainer) measure(rows []int) (acc, loss float64, err error) {
	x, y := t.batch(rows)
	defer x.FinalizeAll()
	defer y.FinalizeAll()
	out, err := t.eval.Exec(x, y)
	if err != nil {
		return 0, 0, fmt.Errorf("training: evaluate: %w", err)
	}
	defer finalize(out)
	pred, err := tensors.CopyFlatData[int32](out[0])
	if err != nil {
		return 0, 0, fmt.Errorf("training: evaluate: %w", err)
	}
	right := 0
	for k, i := range rows {
		if int(pred[k]) == t.d.y[i] {
			right++
		}
	}
	return float64(right) / float64(len(rows)), scalar(out[1]), nil
}

// batch builds the input and label tensors of rows.
func (t *trainer) batch(rows []int) (x, y *tensors.Tensor) {
	dims := append([]int{len(rows)}, t.c.inputDims...)
	switch t.c.inputDType {
	case dtypes.Float32:
		buf, _ := t.input.([]float32)
		buf, t.labels = gather(t.d, rows, buf, t.labels)
		t.input, x = buf, tensors.FromFlatDataAndDimensions(buf, dims...)
	case dtypes.Float64:
		buf, _ := t.input.([]float64)
		buf, t.labels = gather(t.d, rows, buf, t.labels)
		t.input, x = buf, tensors.FromFlatDataAndDimensions(buf, dims...)
	case dtypes.Int32:
		buf, _ := t.input.([]int32)
		buf, t.labels = gather(t.d, rows, buf, t.labels)
		t.input, x = buf, tensors.FromFlatDataAndDimensions(buf, dims...)
	case dtypes.Int64:
		buf, _ := t.input.([]int64)
		buf, t.labels = gather(t.d, rows, buf, t.labels)
		t.input, x = buf, tensors.FromFlatDataAndDimensions(buf, dims...)
	}
	return x, tensors.FromFlatDataAndDimensions(t.labels, len(rows), 1)
}

// save writes the trained weights into the model and the model to path.
func (t *trainer) save(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("training: save %s: %v", path, errorFromPanic(r))
		}
	}()
	if err := t.c.om.ContextToONNX(t.c.ctx); err != nil {
		return fmt.Errorf("training: save %s: %w", path, err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&t.c.om.Proto)
	if err != nil {
		return fmt.Errorf("training: save %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

// scalar reads a scalar float tensor.
func scalar(t *tensors.Tensor) float64 {
	switch v := t.Value().(type) {
	case float32:
		return float64(v)
	case float64:
		return v
	}
	return math.NaN()
}

func finalize(ts []*tensors.Tensor) {
	for _, t := range ts {
		_ = t.FinalizeAll()
	}
}
