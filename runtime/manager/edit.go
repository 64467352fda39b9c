package manager

import (
	"context"
	"fmt"
	"path"
	"strings"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
	"github.com/sandboxd/sandboxd/runtime/errdefs"
	"github.com/sandboxd/sandboxd/runtime/identifiers"
)

// Editor and listing limits, checked here before the agent sees a request
// and again on what it answers (it is untrusted).
const (
	// MaxEditText bounds file_text, old_str and new_str together: the
	// editor is for source and text files a model reads and writes, and a
	// request carries them in one message (Upload is for anything bigger).
	MaxEditText = 4 << 20
	// MaxViewCharacters is the largest max_characters a VIEW may ask for:
	// a million characters is far more than a model's context takes, and
	// bounds the answer.
	MaxViewCharacters = 1_000_000
	// maxEditAnswer bounds an EditFile answer's text from the agent: a VIEW
	// at MaxViewCharacters (up to 4 bytes a character) plus line numbers.
	maxEditAnswer = 4*MaxViewCharacters + 1<<20
	// MaxListDepth is the deepest ListFiles descends: deeper trees are
	// listed a level at a time.
	MaxListDepth = 10
	// MaxListEntries is the most entries one ListFiles returns; the agent
	// stops there and says the listing was truncated.
	MaxListEntries = 10_000
)

// editCommands names the commands EditFile accepts, for messages.
const editCommands = "EDIT_COMMAND_VIEW, EDIT_COMMAND_CREATE, EDIT_COMMAND_STR_REPLACE or EDIT_COMMAND_INSERT"

// EditFile runs one text-editor command in a sandbox. The text a CREATE,
// STR_REPLACE or INSERT writes counts against the sandbox's upload limits,
// the text a VIEW returns against its download limits.
func (m *Manager) EditFile(ctx context.Context, req *sandboxv1.EditFileRequest) (*sandboxv1.EditFileResponse, error) {
	if err := m.checkID(req.GetSandboxId()); err != nil {
		return nil, err
	}
	p, err := identifiers.SandboxPath(req.GetPath())
	if req.GetCommand() == sandboxv1.EditCommand_EDIT_COMMAND_VIEW && req.GetPath() != "" {
		// A VIEW may name a directory, the workspace itself or the root.
		p, err = dirPath(req.GetPath())
	}
	if err != nil {
		return nil, err
	}
	if err := checkEdit(req); err != nil {
		return nil, err
	}
	e, err := m.lookup(ctx, req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	written := int64(len(req.GetFileText()) + len(req.GetNewStr()))
	limits := e.tmpl.Limits
	if written > limits.UploadFile {
		return nil, fmt.Errorf("edit of %q writes %d bytes, more than %d (policy limits.upload_file): %w", p, written, limits.UploadFile, errdefs.ErrResourceExhausted)
	}
	sb, done, err := m.use(ctx, e)
	if err != nil {
		return nil, err
	}
	defer done()
	// Charged before the agent writes, so that edits running at the same
	// time cannot each see the whole budget; a failed edit gives it back.
	if e.uploaded.Add(written) > limits.UploadTotal {
		e.uploaded.Add(-written)
		return nil, fmt.Errorf("sandbox %q would exceed its %d bytes of uploads (policy limits.upload_total): %w", e.id, limits.UploadTotal, errdefs.ErrResourceExhausted)
	}
	areq := &sandboxv1.EditFileRequest{
		Command: req.GetCommand(), Path: p, FileText: req.GetFileText(), OldStr: req.GetOldStr(), NewStr: req.GetNewStr(),
		InsertLine: req.GetInsertLine(), ViewRange: req.GetViewRange(), MaxCharacters: req.GetMaxCharacters(),
	}
	resp, err := sb.Agent().EditFile(ctx, areq)
	if err != nil {
		e.uploaded.Add(-written)
		return nil, m.fileFailed(e, sb, "editing", p, err)
	}
	if written > 0 {
		m.saveRecord(e) // the new upload total survives a restart
	}
	out, err := checkEditAnswer(resp)
	if err != nil {
		return nil, m.fileFailed(e, sb, "editing", p, err)
	}
	if req.GetCommand() == sandboxv1.EditCommand_EDIT_COMMAND_VIEW {
		n := int64(len(out.Content))
		if e.downloaded.Add(n) > limits.DownloadTotal {
			e.downloaded.Add(-n)
			return nil, fmt.Errorf("sandbox %q would exceed its %d bytes of downloads (policy limits.download_total): %w", e.id, limits.DownloadTotal, errdefs.ErrResourceExhausted)
		}
		m.saveRecord(e)
	}
	return out, nil
}

// checkEdit validates an EditFile request's command and its arguments.
func checkEdit(req *sandboxv1.EditFileRequest) error {
	switch req.GetCommand() {
	case sandboxv1.EditCommand_EDIT_COMMAND_VIEW, sandboxv1.EditCommand_EDIT_COMMAND_CREATE,
		sandboxv1.EditCommand_EDIT_COMMAND_STR_REPLACE, sandboxv1.EditCommand_EDIT_COMMAND_INSERT:
	default:
		return fmt.Errorf("edit command %v is not supported: use %s: %w", req.GetCommand(), editCommands, errdefs.ErrInvalidArgument)
	}
	if n := len(req.GetFileText()) + len(req.GetOldStr()) + len(req.GetNewStr()); n > MaxEditText {
		return fmt.Errorf("file_text, old_str and new_str are %d bytes together, more than %d: upload the file instead: %w", n, MaxEditText, errdefs.ErrInvalidArgument)
	}
	if r := req.GetViewRange(); len(r) != 0 && len(r) != 2 {
		return fmt.Errorf("view_range has %d numbers: give two, [first, last], 1-based, last -1 for the end: %w", len(r), errdefs.ErrInvalidArgument)
	}
	if c := req.GetMaxCharacters(); c < 0 || c > MaxViewCharacters {
		return fmt.Errorf("max_characters %d is out of range: 0 (the default) to %d: %w", c, MaxViewCharacters, errdefs.ErrInvalidArgument)
	}
	if req.GetInsertLine() < 0 {
		return fmt.Errorf("insert_line %d is negative: 0 inserts at the top of the file: %w", req.GetInsertLine(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkEditAnswer keeps only a plausible EditFile answer from the agent.
func checkEditAnswer(r *sandboxv1.EditFileResponse) (*sandboxv1.EditFileResponse, error) {
	if len(r.GetContent())+len(r.GetSnippet()) > maxEditAnswer {
		return nil, fmt.Errorf("agent answered %d bytes, more than %d", len(r.GetContent())+len(r.GetSnippet()), maxEditAnswer)
	}
	if !path.IsAbs(r.GetPath()) || len(r.GetPath()) > identifiers.MaxPathLength {
		return nil, fmt.Errorf("agent answered a bad path %q", clipText(r.GetPath(), 256))
	}
	return &sandboxv1.EditFileResponse{Content: r.GetContent(), Path: r.GetPath(), Created: r.GetCreated(), Snippet: r.GetSnippet(), Truncated: r.GetTruncated()}, nil
}

// ListFiles lists a directory of a sandbox down to depth levels.
func (m *Manager) ListFiles(ctx context.Context, req *sandboxv1.ListFilesRequest) (*sandboxv1.ListFilesResponse, error) {
	if err := m.checkID(req.GetSandboxId()); err != nil {
		return nil, err
	}
	p, err := dirPath(req.GetPath())
	if err != nil {
		return nil, err
	}
	if d := req.GetDepth(); d < 0 || d > MaxListDepth {
		return nil, fmt.Errorf("depth %d is out of range: 1 (0 means 1) to %d: %w", d, MaxListDepth, errdefs.ErrInvalidArgument)
	}
	e, err := m.lookup(ctx, req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	sb, done, err := m.use(ctx, e)
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := sb.Agent().ListFiles(ctx, &sandboxv1.ListFilesRequest{Path: p, Depth: req.GetDepth()})
	if err != nil {
		return nil, m.fileFailed(e, sb, "listing", p, err)
	}
	entries := resp.GetEntries()
	if len(entries) > MaxListEntries {
		return nil, m.fileFailed(e, sb, "listing", p, fmt.Errorf("agent listed %d entries, more than %d", len(entries), MaxListEntries))
	}
	out := &sandboxv1.ListFilesResponse{Truncated: resp.GetTruncated(), Entries: make([]*sandboxv1.FileEntry, 0, len(entries))}
	for _, en := range entries {
		fe, ok := cleanEntry(en)
		if !ok {
			return nil, m.fileFailed(e, sb, "listing", p, fmt.Errorf("agent listed a bad path %q", clipText(en.GetPath(), 256)))
		}
		out.Entries = append(out.Entries, fe)
	}
	return out, nil
}

// dirPath checks a path that names a directory: as SandboxPath, and also
// "" or "." for the workspace and "/" for the root.
func dirPath(p string) (string, error) {
	if len(p) > identifiers.MaxPathLength || strings.ContainsRune(p, 0) {
		return identifiers.SandboxPath(p) // its error says which
	}
	switch clean := path.Clean(p); {
	case p == "" || clean == ".":
		return identifiers.Workspace, nil
	case clean == "/" && len(p) <= identifiers.MaxPathLength:
		return "/", nil
	default:
		return identifiers.SandboxPath(p)
	}
}

// cleanEntry copies a file entry from the agent, refusing one whose path is
// not an absolute, clean sandbox path.
func cleanEntry(en *sandboxv1.FileEntry) (*sandboxv1.FileEntry, bool) {
	p := en.GetPath()
	if !path.IsAbs(p) || path.Clean(p) != p || len(p) > identifiers.MaxPathLength || strings.ContainsRune(p, 0) {
		return nil, false
	}
	return &sandboxv1.FileEntry{Path: p, Size: en.GetSize(), Mode: en.GetMode() & 0o7777, IsDir: en.GetIsDir(), ModifiedAt: en.GetModifiedAt()}, true
}

// clipText cuts s to n bytes for a message.
func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
