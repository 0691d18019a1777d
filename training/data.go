package training

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
)

// maxDataBytes bounds the CSV file a step reads: the whole data set is
// held in memory, as float64s, for shuffling.
const maxDataBytes = 1 << 30

// dataset is a labelled CSV held in memory: rows of features and a class
// label each.
type dataset struct {
	path     string
	features int       // columns per row, the label's not counted
	label    int       // the label's column, zero-based
	x        []float64 // rows × features, row-major
	y        []int     // label per row
	lines    []int     // the CSV line of each row, for errors
}

func (d *dataset) rows() int { return len(d.y) }

func (d *dataset) row(i int) []float64 { return d.x[i*d.features : (i+1)*d.features] }

// column returns the one-based CSV column of feature j, for errors.
func (d *dataset) column(j int) int {
	if j >= d.label {
		return j + 2
	}
	return j + 1
}

// readCSV reads a labelled data set: one row per line, every column a
// number, one of them (labelColumn, see TrainOptions.LabelColumn) the class
// label, a non-negative integer (checkLabels checks its range). A first
// line with a field that is not a number is a header, which names the
// columns. Every error names the file and, for bad content, the line and
// column, and wraps ErrInvalidData.
func readCSV(path, labelColumn string) (*dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("training: data: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("training: data: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("training: data %s is a directory, not a CSV file: %w", path, ErrInvalidData)
	}
	if fi.Size() > maxDataBytes {
		return nil, fmt.Errorf("training: data %s is %d bytes, more than the %d this step reads: %w",
			path, fi.Size(), maxDataBytes, ErrInvalidData)
	}
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("training: data %s line %d: %s: %w", path, line, fmt.Sprintf(format, args...), ErrInvalidData)
	}

	r := csv.NewReader(io.LimitReader(f, maxDataBytes))
	r.ReuseRecord = true
	r.TrimLeadingSpace = true
	d := &dataset{path: path}
	label := -1
	first := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				if errors.Is(pe.Err, csv.ErrFieldCount) {
					return nil, bad(pe.Line, "%d columns, but the first line has %d", len(rec), d.features+1)
				}
				return nil, bad(pe.Line, "%v", pe.Err)
			}
			return nil, fmt.Errorf("training: data %s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			if len(rec) < 2 {
				return nil, bad(line, "%d column; a labelled data set needs features and a label", len(rec))
			}
			d.features = len(rec) - 1
			header := !allNumbers(rec)
			if label, err = labelIndex(labelColumn, rec, header); err != nil {
				return nil, bad(line, "%v", err)
			}
			d.label = label
			if header {
				continue
			}
		}
		for j, field := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(field), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, bad(line, "column %d: %q is not a finite number", j+1, field)
			}
			if j != label {
				d.x = append(d.x, v)
				continue
			}
			if v != math.Trunc(v) || v < 0 || v > math.MaxInt32 {
				return nil, bad(line, "label %s (column %d) is not a class number: labels are integers from 0", field, j+1)
			}
			d.y = append(d.y, int(v))
		}
		d.lines = append(d.lines, line)
	}
	if d.rows() == 0 {
		return nil, fmt.Errorf("training: data %s holds no rows: %w", path, ErrInvalidData)
	}
	return d, nil
}

// checkLabels checks that every label is below classes, the number of
// class scores the model outputs.
func (d *dataset) checkLabels(classes int, model string) error {
	for i, y := range d.y {
		if y >= classes {
			return fmt.Errorf("training: data %s line %d: label %d is out of range: model %s has %d classes, labelled 0 to %d: %w",
				d.path, d.lines[i], y, model, classes, classes-1, ErrInvalidData)
		}
	}
	return nil
}

// checkIntegral checks that every feature is an integer that fits in T,
// for a model whose input is integer (token ids, say).
func (d *dataset) checkIntegral(bits int) error {
	limit := math.Ldexp(1, bits-1)
	for i, v := range d.x {
		if v != math.Trunc(v) || v < -limit || v >= limit {
			r := i / d.features
			return fmt.Errorf("training: data %s line %d: column %d: %v is not an integer the model's INT%d input can take: %w",
				d.path, d.lines[r], d.column(i%d.features), v, bits, ErrInvalidData)
		}
	}
	return nil
}

// allNumbers reports whether every field parses as a number.
func allNumbers(rec []string) bool {
	for _, f := range rec {
		if _, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err != nil {
			return false
		}
	}
	return true
}

// labelIndex resolves TrainOptions.LabelColumn against the first record:
// empty means the last column; a header's column name; or a zero-based
// index, negative counting from the end.
func labelIndex(spec string, first []string, header bool) (int, error) {
	n := len(first)
	if spec == "" {
		return n - 1, nil
	}
	if header {
		for i, name := range first {
			if strings.TrimSpace(name) == spec {
				return i, nil
			}
		}
	}
	i, err := strconv.Atoi(spec)
	if err != nil {
		if header {
			return 0, fmt.Errorf("label column %q is not a column name of the header (%s) nor an index", spec, strings.Join(first, ","))
		}
		return 0, fmt.Errorf("label column %q is not an index, and the file has no header to name columns", spec)
	}
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return 0, fmt.Errorf("label column %s is out of range: the file has %d columns", spec, n)
	}
	return i, nil
}

// split shuffles the rows with rng and sets aside about fraction of each
// class for validation (stratified, so a small data set's validation rows
// keep its class balance). It returns the training and validation row
// indices, each in shuffled order.
func (d *dataset) split(fraction float64, classes int, rng *rand.Rand) (train, val []int) {
	byClass := make([][]int, classes)
	for i, y := range d.y {
		byClass[y] = append(byClass[y], i)
	}
	for _, rows := range byClass {
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		n := int(math.Round(fraction * float64(len(rows))))
		val = append(val, rows[:n]...)
		train = append(train, rows[n:]...)
	}
	// Interleave the classes.
	rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
	rng.Shuffle(len(val), func(i, j int) { val[i], val[j] = val[j], val[i] })
	return train, val
}

// classCounts counts the rows of each class among rows.
func (d *dataset) classCounts(rows []int, classes int) []int {
	c := make([]int, classes)
	for _, i := range rows {
		c[d.y[i]]++
	}
	return c
}

// gather copies the features of rows into dst, converted by conv, and
// their labels into labels, both reused when large enough.
func gather[T float32 | float64 | int32 | int64](d *dataset, rows []int, dst []T, labels []int32) ([]T, []int32) {
	dst = slices.Grow(dst[:0], len(rows)*d.features)[:len(rows)*d.features]
	labels = slices.Grow(labels[:0], len(rows))[:len(rows)]
	for k, i := range rows {
		out := dst[k*d.features : (k+1)*d.features]
		for j, v := range d.row(i) {
			out[j] = T(v)
		}
		labels[k] = int32(d.y[i])
	}
	return dst, labels
}
