// Command mlagent is an LLM agent that trains and runs open-weight models in
// an isolated sandbox while keeping every secret outside it.
package main

import (
	"os"

	"github.com/mlagent/mlagent/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
