// Package skills loads skills: folders holding a SKILL.md (YAML front
// matter with name and description, then a Markdown body) and any files it
// refers to. Names and descriptions go into the agent's system prompt; the
// body and files are read only when the agent asks for them (progressive
// disclosure). Skills come bundled in the binary and from a user folder.
package skills

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"

	"gopkg.in/yaml.v3"
)

//go:embed all:bundled
var bundled embed.FS

// Bundled returns the skills shipped in the binary.
func Bundled() fs.FS {
	sub, err := fs.Sub(bundled, "bundled")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}

// Skill is one loaded skill.
type Skill struct {
	Name        string
	Description string
	Source      string // "bundled" or "user"
	// Location is where the skill lives, for people: the user folder
	// path, or "bundled:<dir>".
	Location string

	fsys fs.FS  // the folder that holds the skill directories
	dir  string // the skill's directory within fsys
	body string
}

// Body returns the Markdown after the front matter.
func (s *Skill) Body() string { return s.body }

// Files lists the skill's files other than SKILL.md, relative to its
// directory, sorted.
func (s *Skill) Files() ([]string, error) {
	var files []string
	err := fs.WalkDir(s.fsys, s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != s.dir && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		rel := strings.TrimPrefix(p, s.dir+"/")
		if rel != "SKILL.md" && !strings.HasPrefix(d.Name(), ".") {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list skill %s: %w", s.Name, err)
	}
	sort.Strings(files)
	return files, nil
}

// ErrBadPath is returned for a file path that is not inside the skill.
var ErrBadPath = errors.New("path must stay inside the skill folder (relative, no .. segment)")

// ReadFile reads a file of the skill by its path relative to the skill
// directory. Paths escaping the directory are refused.
func (s *Skill) ReadFile(rel string) ([]byte, error) {
	rel = strings.TrimPrefix(rel, "./")
	if !fs.ValidPath(rel) || rel == "." {
		return nil, ErrBadPath
	}
	b, err := fs.ReadFile(s.fsys, path.Join(s.dir, rel))
	if err != nil {
		return nil, fmt.Errorf("skill %s: %w", s.Name, err)
	}
	return b, nil
}

// Front is the YAML front matter of a SKILL.md.
type Front struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// Compiled on first use, not at every start of the binary.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`) })

// Parse splits a SKILL.md into its front matter and body and validates the
// front matter: name is lowercase letters, digits and hyphens (at most 64),
// description is non-empty (at most 1024 characters). Unknown front-matter
// keys are allowed (other tools add their own).
func Parse(data []byte) (Front, string, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	rest, ok := strings.CutPrefix(s, "---\n")
	if !ok {
		return Front{}, "", errors.New("SKILL.md must start with a --- front matter block")
	}
	var fm, body string
	if strings.HasPrefix(rest, "---\n") || rest == "---" {
		fm, body = "", strings.TrimPrefix(strings.TrimPrefix(rest, "---"), "\n")
	} else {
		i := strings.Index(rest, "\n---\n")
		if i < 0 {
			if strings.HasSuffix(rest, "\n---") {
				i = len(rest) - 4
			} else {
				return Front{}, "", errors.New("SKILL.md front matter is not closed by ---")
			}
		}
		fm = rest[:i]
		body = rest[min(i+5, len(rest)):]
	}
	var f Front
	if err := yaml.Unmarshal([]byte(fm), &f); err != nil {
		return Front{}, "", fmt.Errorf("SKILL.md front matter: %w", err)
	}
	f.Name = strings.TrimSpace(f.Name)
	f.Description = strings.TrimSpace(f.Description)
	if !nameRE().MatchString(f.Name) {
		return Front{}, "", fmt.Errorf("SKILL.md name %q: want lowercase letters, digits and hyphens, at most 64", f.Name)
	}
	if f.Description == "" {
		return Front{}, "", errors.New("SKILL.md description is required")
	}
	if len(f.Description) > 1024 {
		return Front{}, "", errors.New("SKILL.md description is longer than 1024 characters")
	}
	return f, strings.TrimLeft(body, "\n"), nil
}

// LoadFS loads every <dir>/SKILL.md directly under fsys's root. A bad skill
// is reported in errs and skipped; the others still load.
func LoadFS(fsys fs.FS, source, location string) (skills []*Skill, errs []error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, []error{fmt.Errorf("read skills %s: %w", location, err)}
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := readSkillMD(fsys, path.Join(e.Name(), "SKILL.md"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("skill %s: %w", e.Name(), err))
			continue
		}
		f, body, err := Parse(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("skill %s/%s: %w", location, e.Name(), err))
			continue
		}
		skills = append(skills, &Skill{
			Name: f.Name, Description: f.Description, Source: source,
			Location: location + "/" + e.Name(), fsys: fsys, dir: e.Name(), body: body,
		})
	}
	return skills, errs
}

// maxSkillMD bounds a SKILL.md: front matter and instructions, not data.
const maxSkillMD = 1 << 20

// readSkillMD reads a SKILL.md of at most maxSkillMD bytes: the user
// folder is written by sandboxes, and a sparse file claiming terabytes
// would otherwise be allocated whole.
func readSkillMD(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxSkillMD {
		return nil, fmt.Errorf("%s: want a regular file of at most %d KiB", name, maxSkillMD>>10)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSkillMD+1))
	if err == nil && len(b) > maxSkillMD {
		err = fmt.Errorf("%s: want a regular file of at most %d KiB", name, maxSkillMD>>10)
	}
	return b, err
}

// userFS is the user skills folder opened as a root. The folder is on the
// data volume, which sandboxes write, and `mlagent skills` reads it on the
// host: os.Root keeps reads inside it, even through symlinks, and opening
// is non-blocking, so a FIFO planted there is refused rather than waited
// on (a regular file reads the same either way).
type userFS struct{ root *os.Root }

var errSpecial = errors.New("not a regular file or directory")

func (u userFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	f, err := u.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() && !st.IsDir() {
		err = &fs.PathError{Op: "open", Path: name, Err: errSpecial}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Set is the skills available to a session, sorted by name.
type Set struct{ skills []*Skill }

// Load returns the bundled skills plus those in userDir ("" or a missing
// folder means none). A user skill with a bundled skill's name replaces it,
// so users can adapt a bundled skill. Problems with single skills come back
// in errs; they never stop the others from loading.
func Load(userDir string) (*Set, []error) {
	b, errs := LoadFS(Bundled(), "bundled", "bundled:")
	byName := map[string]*Skill{}
	for _, s := range b {
		byName[s.Name] = s
	}
	if userDir != "" {
		if st, err := os.Stat(userDir); err == nil && st.IsDir() {
			root, err := os.OpenRoot(userDir)
			if err != nil {
				errs = append(errs, fmt.Errorf("open skills dir: %w", err))
			} else {
				u, uerrs := LoadFS(userFS{root}, "user", userDir)
				errs = append(errs, uerrs...)
				for _, s := range u {
					byName[s.Name] = s
				}
			}
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("skills dir: %w", err))
		}
	}
	set := &Set{}
	for _, s := range byName {
		set.skills = append(set.skills, s)
	}
	sort.Slice(set.skills, func(i, j int) bool { return set.skills[i].Name < set.skills[j].Name })
	return set, errs
}

// All returns the skills sorted by name.
func (s *Set) All() []*Skill { return s.skills }

// Get returns the named skill.
func (s *Set) Get(name string) (*Skill, bool) {
	for _, sk := range s.skills {
		if sk.Name == name {
			return sk, true
		}
	}
	return nil, false
}
