package training

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadCSV(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		label  string
		x      []float64
		y      []int
		lines0 []int
	}{
		{"header, label last", []string{"a,b,class", "1,2,0", "3,4,1"}, "", []float64{1, 2, 3, 4}, []int{0, 1}, []int{2, 3}},
		{"no header", []string{"1,2,0", "3.5,-4,2"}, "", []float64{1, 2, 3.5, -4}, []int{0, 2}, []int{1, 2}},
		{"label by name", []string{"class,a,b", "1,2,3", "0,4,5"}, "class", []float64{2, 3, 4, 5}, []int{1, 0}, []int{2, 3}},
		{"label by index", []string{"1,7,2", "0,8,3"}, "0", []float64{7, 2, 8, 3}, []int{1, 0}, []int{1, 2}},
		{"label counted from the end", []string{"5,1,6", "7,0,8"}, "-2", []float64{5, 6, 7, 8}, []int{1, 0}, []int{1, 2}},
		{"integral float label, spaces", []string{"1, 2, 1.0"}, "", []float64{1, 2}, []int{1}, []int{1}},
		{"blank lines skipped", []string{"1,2,0", "", "3,4,1"}, "", []float64{1, 2, 3, 4}, []int{0, 1}, []int{1, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := readCSV(writeCSV(t, tc.lines...), tc.label)
			if err != nil {
				t.Fatal(err)
			}
			if d.features != 2 {
				t.Errorf("features = %d, want 2", d.features)
			}
			if diff := cmp.Diff(tc.x, d.x); diff != "" {
				t.Errorf("features (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.y, d.y); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.lines0, d.lines); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadCSVInvalid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		label string
		want  []string
	}{
		{"wrong column count", []string{"a,b,c", "1,2,0", "1,2", "3,4,1"}, "", []string{"line 3", "2 columns, but the first line has 3"}},
		{"not a number", []string{"a,b,c", "1,2,0", "1,x,0"}, "", []string{"line 3", "column 2", `"x"`}},
		{"NaN", []string{"1,NaN,0"}, "", []string{"line 1", "column 2", "not a finite number"}},
		{"infinite", []string{"1,2,0", "Inf,2,0"}, "", []string{"line 2", "column 1"}},
		{"fractional label", []string{"1,2,0.5"}, "", []string{"line 1", "label 0.5", "not a class number"}},
		{"negative label", []string{"1,2,-1"}, "", []string{"line 1", "label -1"}},
		{"header only", []string{"a,b,c"}, "", []string{"holds no rows"}},
		{"one column", []string{"1", "2"}, "", []string{"line 1", "1 column"}},
		{"unknown label name", []string{"a,b,c", "1,2,0"}, "class", []string{`label column "class"`, "a,b,c"}},
		{"label index out of range", []string{"1,2,0"}, "3", []string{"label column 3 is out of range"}},
		{"label name without header", []string{"1,2,0"}, "class", []string{"no header"}},
		{"bare quote", []string{"1,2,0", `1,"2,0`}, "", []string{"line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readCSV(writeCSV(t, tc.lines...), tc.label)
			if !errors.Is(err, ErrInvalidData) {
				t.Fatalf("err = %v, want ErrInvalidData", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := readCSV(t.TempDir()+"/nope.csv", "")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.csv") {
			t.Fatalf("err = %v, want fs.ErrNotExist naming the file", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := readCSV(t.TempDir(), "")
		if !errors.Is(err, ErrInvalidData) {
			t.Fatalf("err = %v, want ErrInvalidData", err)
		}
	})
}

func TestCheckLabels(t *testing.T) {
	d, err := readCSV(writeCSV(t, "x,y", "1,0", "2,2", "3,3"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.checkLabels(4, "m.onnx"); err != nil {
		t.Errorf("4 classes: %v", err)
	}
	err = d.checkLabels(3, "m.onnx")
	if !errors.Is(err, ErrInvalidData) || !strings.Contains(err.Error(), "line 4: label 3 is out of range: model m.onnx has 3 classes") {
		t.Errorf("3 classes: err = %v", err)
	}
}

// TestSplit: the validation rows are about the fraction of each class,
// every row lands on exactly one side, and the same seed splits the same.
func TestSplit(t *testing.T) {
	d, err := readCSV(irisCSV, "")
	if err != nil {
		t.Fatal(err)
	}
	split := func(seed uint64) ([]int, []int) {
		return d.split(0.2, 3, rand.New(rand.NewPCG(seed, trainStream)))
	}
	train, val := split(1)
	if diff := cmp.Diff([]int{40, 40, 40}, d.classCounts(train, 3)); diff != "" {
		t.Errorf("training rows per class (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{10, 10, 10}, d.classCounts(val, 3)); diff != "" {
		t.Errorf("validation rows per class (-want +got):\n%s", diff)
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(train), val...)))
	for i, r := range all {
		if r != i {
			t.Fatalf("rows after the split are not 0..149 once each: %v", all)
		}
	}
	train2, val2 := split(1)
	if !slices.Equal(train, train2) || !slices.Equal(val, val2) {
		t.Error("the same seed split differently")
	}
	if _, val3 := split(2); slices.Equal(val, val3) {
		t.Error("another seed split the same")
	}
	if train, val := d.split(0, 3, rand.New(rand.NewPCG(1, 1))); len(train) != 150 || len(val) != 0 {
		t.Errorf("no split: %d training and %d validation rows", len(train), len(val))
	}
}
