package demo

import "github.com/mlagent/mlagent/internal/fakehub"

// The demo's offline Hub catalogue: real repositories the reference
// session considers. Download and like counts are left out: offline,
// there is nothing true to show.
var (
	hubModels = []fakehub.Repo{
		{ID: "microsoft/swin-tiny-patch4-window7-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "swin", "image-classification", "vision", "dataset:imagenet-1k", "license:apache-2.0"}},
		{ID: "microsoft/swin-base-patch4-window7-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "swin", "image-classification", "vision", "dataset:imagenet-1k", "license:apache-2.0"}},
		{ID: "timm/resnet50.a1_in1k", PipelineTag: "image-classification", Library: "timm",
			Tags: []string{"timm", "pytorch", "image-classification", "license:apache-2.0"}},
		{ID: "google/vit-base-patch16-224", PipelineTag: "image-classification", Library: "transformers",
			Tags: []string{"transformers", "pytorch", "vit", "image-classification", "vision", "license:apache-2.0"}},
		{ID: "ibm-nasa-geospatial/Prithvi-EO-1.0-100M", Library: "terratorch",
			Tags: []string{"pytorch", "earth-observation", "satellite", "multispectral", "license:apache-2.0"}},
	}
	hubDatasets = []fakehub.Repo{
		{ID: "blanchon/EuroSAT_MSI",
			Tags: []string{"task_categories:image-classification", "modality:image", "satellite", "multispectral", "sentinel-2", "license:mit"}},
		{ID: "blanchon/EuroSAT_RGB",
			Tags: []string{"task_categories:image-classification", "modality:image", "satellite", "sentinel-2", "license:mit"}},
		{ID: "jonathan-roberts1/bigearthnet",
			Tags: []string{"task_categories:image-classification", "satellite", "multispectral", "sentinel-2"}},
	}
)
