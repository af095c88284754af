package store_test

import (
	"os"
	"testing"

	"github.com/abacus-counter/abacus/store"
)

func TestMain(m *testing.M) {
	// Every test's checkpoints run in many small transactions, as large ones
	// do in production.
	store.SetCheckpointTxSlots(7)
	os.Exit(m.Run())
}
