package syncer

import (
	_ "embed"
	"strings"
)

//go:embed space/app.py
var spaceApp []byte

// SpaceFiles are the files of a new Space, in the form Trackio deploys
// its own dashboards: Gradio SDK, requirements pinning trackio, an app.py
// that ends in trackio.show(). Ours also imports the syncer's chunks from
// the companion dataset before serving.
func SpaceFiles(spaceID, datasetID string) []File {
	_, name, _ := strings.Cut(spaceID, "/")
	readme := "---\n" +
		"title: " + name + "\n" +
		"emoji: 🎯\n" +
		"colorFrom: indigo\n" +
		"colorTo: yellow\n" +
		"sdk: gradio\n" +
		"app_file: app.py\n" +
		"pinned: false\n" +
		"tags:\n - trackio\n - mlagent\n" +
		"datasets:\n - " + datasetID + "\n" +
		"---\n\n" +
		"Training metrics synced by mlagent from a Trackio directory.\n" +
		"Rows live in the dataset " + datasetID + " under mlagent/<project>/.\n" +
		"If the dataset is private, add a read token as the Space secret HF_TOKEN.\n"
	return []File{
		{Path: "README.md", Content: []byte(readme)},
		{Path: "requirements.txt", Content: []byte("trackio[spaces]\nhuggingface_hub\n")},
		{Path: "app.py", Content: spaceApp},
	}
}
