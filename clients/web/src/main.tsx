import { render } from 'preact';
import { Root } from './components/Root.js';
import './styles.css';

render(<Root />, document.getElementById('root')!);
